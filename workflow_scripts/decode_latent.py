"""Rule decode_latent: ridge decoder from one ROI to one latent, predictions on the test images."""

from brainldm.config import with_runtime
from brainldm.decoding import decode_latent
from brainldm.logs import setup_logging

setup_logging(snakemake.log[0])
decode_latent(
    betas_path=snakemake.input.betas,
    feature_path=snakemake.input.feature,
    out_path=snakemake.output[0],
    decoding=with_runtime(snakemake.params.decoding, snakemake.config, "decoding"),
    subject=snakemake.wildcards.subject,
    roi=snakemake.params.roi,
    target=snakemake.wildcards.target,
)
