"""Rule extract_stimuli: images and captions of every image the configured subjects saw."""

from brainldm.logs import setup_logging
from brainldm.nsd.ingest import extract_stimuli

setup_logging(snakemake.log[0])
extract_stimuli(
    stimuli_path=snakemake.input.stimuli,
    stim_info_path=snakemake.input.stim_info,
    trials_paths=snakemake.input.trials,
    out_path=snakemake.output[0],
    caption_files=list(snakemake.input.captions),
)
