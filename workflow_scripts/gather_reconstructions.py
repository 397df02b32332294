"""Rule gather_reconstructions: a subject's reconstructed images and latents from the shards of every part."""

from brainldm.config import with_runtime
from brainldm.ldm.gather import gather_reconstructions
from brainldm.logs import setup_logging

setup_logging(snakemake.log[0])
gather_reconstructions(
    part_manifests=snakemake.input.parts,
    z_path=snakemake.input.z,
    image_dir=snakemake.output.images,
    latents_path=snakemake.output.latents,
    settings=with_runtime(snakemake.params.settings, snakemake.config, "reconstruction"),
    stimuli_path=snakemake.input.stimuli,
    sheet_path=snakemake.output.sheet,
)
