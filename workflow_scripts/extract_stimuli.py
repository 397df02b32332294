"""Rule extract_stimuli: images and captions of every image the configured subjects saw."""

from brainldm.logs import setup_logging
from brainldm.nsd.ingest import extract_stimuli

setup_logging(snakemake.log[0])
extract_stimuli(
    root=snakemake.params.root,
    trials_paths=snakemake.input.trials,
    out_path=snakemake.output[0],
    caption_files=list(snakemake.input.captions),
)
