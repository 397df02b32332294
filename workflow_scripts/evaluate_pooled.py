"""Rule evaluate_pooled: identification table and Figure-5 plot over subjects, and the community table."""

from brainldm.config import with_runtime
from brainldm.evaluation import evaluate_pooled
from brainldm.logs import setup_logging

setup_logging(snakemake.log[0])
evaluate_pooled(
    subjects=snakemake.params.subjects,
    paper_paths=snakemake.input.paper,
    community_paths=snakemake.input.community,
    n_samples=snakemake.params.n_samples,
    settings=with_runtime(snakemake.params.settings, snakemake.config, "evaluation"),
    identification_path=snakemake.output.identification,
    plot_path=snakemake.output.plot,
    community_path=snakemake.output.community,
)
