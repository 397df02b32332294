"""Rule extract_roi_betas: one subject's train and test betas per ROI, streamed per session."""

from brainldm.logs import setup_logging
from brainldm.nsd.ingest import extract_roi_betas

setup_logging(snakemake.log[0])
extract_roi_betas(
    root=snakemake.params.root,
    subject=snakemake.wildcards.subject,
    trials_path=snakemake.input.trials,
    ingestion=snakemake.params.ingestion,
    rois=snakemake.params.rois,
    out_paths=dict(zip(snakemake.params.rois, snakemake.output)),
)
