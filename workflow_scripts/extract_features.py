"""Rule extract_features: z, c, zc and U-Net activations of every stimulus image."""

from brainldm.config import with_runtime
from brainldm.ldm import extract_features
from brainldm.logs import setup_logging

setup_logging(snakemake.log[0])
extract_features(
    model=snakemake.params.model,
    stimuli_path=snakemake.input.stimuli,
    out_paths=dict(zip(snakemake.params.names, snakemake.output)),
    features_config=with_runtime(snakemake.params.features, snakemake.config, "features"),
    shard_dir=snakemake.params.shard_dir,
    model_loading=snakemake.params.model_loading,
)
