"""Rule map_best_unet_layer: the U-Net block that predicts each significant voxel best, at one stage."""

from brainldm.config import with_runtime
from brainldm.encoding import map_best_unet_layer
from brainldm.logs import setup_logging

setup_logging(snakemake.log[0])
map_best_unet_layer(
    result_paths=list(snakemake.input.results),
    reference_path=snakemake.input.reference,
    out_map=snakemake.output.map,
    out_labels=snakemake.output.labels,
    settings=with_runtime(snakemake.params.settings, snakemake.config, "encoding"),
)
