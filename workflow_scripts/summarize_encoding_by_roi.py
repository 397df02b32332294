"""Rule summarize_encoding_by_roi: mean r and fraction of significant voxels per streams label."""

from brainldm.config import with_runtime
from brainldm.encoding import summarize_encoding_by_roi
from brainldm.logs import setup_logging

setup_logging(snakemake.log[0])
summarize_encoding_by_roi(
    result_paths=list(snakemake.input.results),
    streams_path=snakemake.input.streams,
    out_tsv=snakemake.output[0],
    settings=with_runtime(snakemake.params.settings, snakemake.config, "encoding"),
)
