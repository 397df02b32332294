"""Rule reduce_features: PCA of every feature, fitted on one subject's training images."""

from brainldm.logs import setup_logging
from brainldm.pca import reduce_features

setup_logging(snakemake.log[0])
reduce_features(
    feature_paths=dict(zip(snakemake.params.names, snakemake.input.features)),
    trials_path=snakemake.input.trials,
    out_paths=dict(zip(snakemake.params.names, snakemake.output)),
    n_components=snakemake.params.n_components,
)
