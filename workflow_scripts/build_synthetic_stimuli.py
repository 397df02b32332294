"""Rule build_synthetic_stimuli: design file, stimulus table, image brick and captions."""

from brainldm.logs import setup_logging
from brainldm.synthetic import build_synthetic_stimuli

setup_logging(snakemake.log[0])
build_synthetic_stimuli(
    root=snakemake.params.root,
    truth_path=snakemake.output.scenes,
    synthetic=snakemake.params.synthetic,
)
