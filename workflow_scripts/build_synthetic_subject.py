"""Rule build_synthetic_subject: one subject's behaviour, betas, ROIs and planted truth."""

from brainldm.logs import setup_logging
from brainldm.synthetic import build_synthetic_subject

setup_logging(snakemake.log[0])
build_synthetic_subject(
    root=snakemake.params.root,
    subject=snakemake.wildcards.subject,
    labels_path=snakemake.input.labels,
    scenes_path=snakemake.input.scenes,
    truth_path=snakemake.output.truth,
    synthetic=snakemake.params.synthetic,
)
