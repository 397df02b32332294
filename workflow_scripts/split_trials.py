"""Rule split_trials: trial tables with the train/test split, and the shared test images."""

from brainldm.logs import setup_logging
from brainldm.nsd.ingest import split_trials

setup_logging(snakemake.log[0])
split_trials(
    root=snakemake.params.root,
    subjects=snakemake.params.subjects,
    ingestion=snakemake.params.ingestion,
    trials_paths=dict(zip(snakemake.params.subjects, snakemake.output.trials)),
    test_path=snakemake.output.test_images,
    summary_path=snakemake.output.summary,
)
