"""Rule reconstruct_images: Xz, Xc and Xzc of every test image of one subject."""

from brainldm.config import with_runtime
from brainldm.ldm.reconstruct import reconstruct_images
from brainldm.logs import setup_logging

setup_logging(snakemake.log[0])
reconstruct_images(
    model=snakemake.params.model,
    z_path=snakemake.input.z,
    c_path=snakemake.input.c,
    image_dir=snakemake.output.images,
    latents_path=snakemake.output.latents,
    shard_dir=snakemake.params.shard_dir,
    settings=with_runtime(snakemake.params.settings, snakemake.config, "reconstruction"),
    subject=snakemake.wildcards.subject,
    stimuli_path=snakemake.input.stimuli,
    sheet_path=snakemake.output.sheet,
    model_loading=snakemake.params.model_loading,
)
