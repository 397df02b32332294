"""Rule evaluate_subject: per-image identification and community scores of one subject's reconstructions."""

from brainldm.config import with_runtime
from brainldm.evaluation import evaluate_subject
from brainldm.logs import setup_logging

setup_logging(snakemake.log[0])
evaluate_subject(
    stimuli_path=snakemake.input.stimuli,
    test_images_path=snakemake.input.test_images,
    image_dir=snakemake.input.images,
    n_samples=snakemake.params.n_samples,
    settings=with_runtime(snakemake.params.settings, snakemake.config, "evaluation"),
    subject=snakemake.wildcards.subject,
    paper_path=snakemake.output.paper,
    community_path=snakemake.output.community,
    best_path=snakemake.output.best,
    sheet_path=snakemake.output.sheet,
    threads=snakemake.threads,
)
