"""Rule encode_banded: joint z + zc banded ridge; unique variance of each band."""

from brainldm.config import with_runtime
from brainldm.encoding import encode_banded
from brainldm.logs import setup_logging

setup_logging(snakemake.log[0])
encode_banded(
    betas_path=snakemake.input.betas,
    feature_paths={band: snakemake.input[band] for band in snakemake.params.bands},
    reference_path=snakemake.input.reference,
    out_h5=snakemake.output.result,
    out_maps={name: snakemake.output[name] for name in snakemake.params.map_names},
    settings=with_runtime(snakemake.params.settings, snakemake.config, "encoding"),
    alone_paths={band: snakemake.input[f"{band}_alone"] for band in snakemake.params.bands},
)
