"""Rule draw_map_flatmaps: one pycortex flatmap PNG per encoding map of a subject."""

from brainldm.flatmaps import draw_map_flatmaps
from brainldm.logs import setup_logging

setup_logging(snakemake.log[0])
draw_map_flatmaps(
    maps=snakemake.params.maps,
    out_dir=snakemake.output[0],
    settings=snakemake.params.settings,
    transform_dir=snakemake.params.transform_dir,
    nsd_subject=snakemake.wildcards.subject,
)
