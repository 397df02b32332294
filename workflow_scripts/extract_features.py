"""Rule extract_features: z, c, zc and U-Net activations of one part of the stimulus images."""

from brainldm.config import with_runtime
from brainldm.ldm import extract_features
from brainldm.logs import setup_logging

setup_logging(snakemake.log[0])
extract_features(
    model=snakemake.params.model,
    stimuli_path=snakemake.input.stimuli,
    part=(int(snakemake.wildcards.part), int(snakemake.wildcards.parts)),
    manifest_path=snakemake.output[0],
    features_config=with_runtime(snakemake.params.features, snakemake.config, "features"),
    shard_dir=snakemake.params.shard_dir,
    model_loading=snakemake.params.model_loading,
    threads=snakemake.threads,
)
