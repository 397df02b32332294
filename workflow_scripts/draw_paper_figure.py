"""Rule draw_paper_figure: one of the paper's encoding figures (6-9) as pycortex flatmaps."""

from brainldm.flatmaps import draw_paper_figure
from brainldm.logs import setup_logging

setup_logging(snakemake.log[0])
draw_paper_figure(
    figure=snakemake.wildcards.figure,
    spec=snakemake.params.spec,
    out_png=snakemake.output[0],
    settings=snakemake.params.settings,
    transform_dir=snakemake.params.transform_dir,
    nsd_subject=snakemake.wildcards.subject,
)
