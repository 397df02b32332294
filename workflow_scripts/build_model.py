"""Rule build_model: a randomly initialised Stable Diffusion preset in diffusers layout."""

from brainldm.logs import setup_logging
from brainldm.synthetic.presets import build_model

setup_logging(snakemake.log[0])
build_model(
    preset=snakemake.wildcards.preset,
    caption_files=snakemake.input.captions,
    out_dir=snakemake.output[0],
    seed=snakemake.params.seed,
)
