"""Rule map_best_unet_layer: the U-Net block that predicts each significant voxel best, at one stage."""

from brainldm.config import with_runtime
from brainldm.encoding import best_layer_map
from brainldm.logs import setup_logging

setup_logging(snakemake.log[0])
best_layer_map(
    result_paths=list(snakemake.input.results),
    reference_path=snakemake.input.reference,
    out_map=snakemake.output.map,
    out_labels=snakemake.output.labels,
    settings=with_runtime(snakemake.params.settings, snakemake.config, "encoding"),
)
