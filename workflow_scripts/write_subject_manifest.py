"""Rule write_subject_manifest: every output of one subject with its SHA-256 (the subject's target)."""

from brainldm.logs import setup_logging
from brainldm.manifest import write_subject_manifest

setup_logging(snakemake.log[0])
write_subject_manifest(paths=list(snakemake.input), out_tsv=snakemake.output[0])
