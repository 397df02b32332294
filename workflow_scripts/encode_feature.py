"""Rule encode_feature: ridge from one PCA feature to every voxel; r, p, q, significance maps."""

from brainldm.config import with_runtime
from brainldm.encoding import encode_feature
from brainldm.logs import setup_logging

setup_logging(snakemake.log[0])
encode_feature(
    betas_path=snakemake.input.betas,
    feature_path=snakemake.input.feature,
    reference_path=snakemake.input.reference,
    out_h5=snakemake.output.result,
    out_maps={name: snakemake.output[name] for name in snakemake.params.map_names},
    settings=with_runtime(snakemake.params.settings, snakemake.config, "encoding"),
    feature=snakemake.wildcards.feature,
)
