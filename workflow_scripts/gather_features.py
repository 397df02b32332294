"""Rule gather_features: one file per feature from the shards the feature jobs wrote."""

from brainldm.config import with_runtime
from brainldm.ldm.gather import gather_features
from brainldm.logs import setup_logging

setup_logging(snakemake.log[0])
gather_features(
    part_manifests=list(snakemake.input.parts),
    stimuli_path=snakemake.input.stimuli,
    out_paths=dict(zip(snakemake.params.names, snakemake.output)),
    features_config=with_runtime(snakemake.params.features, snakemake.config, "features"),
)
