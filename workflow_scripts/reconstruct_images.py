"""Rule reconstruct_images: Xz, Xc and Xzc of one part of a subject's test images, into shards."""

from brainldm.config import with_runtime
from brainldm.ldm.reconstruct import reconstruct_images
from brainldm.logs import setup_logging

setup_logging(snakemake.log[0])
reconstruct_images(
    model=snakemake.params.model,
    z_path=snakemake.input.z,
    c_path=snakemake.input.c,
    manifest_path=snakemake.output[0],
    shard_dir=snakemake.params.shard_dir,
    settings=with_runtime(snakemake.params.settings, snakemake.config, "reconstruction"),
    subject=snakemake.wildcards.subject,
    part=(int(snakemake.wildcards.part), int(snakemake.wildcards.parts)),
    model_loading=snakemake.params.model_loading,
    threads=snakemake.threads,
)
