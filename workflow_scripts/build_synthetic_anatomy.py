"""Rule build_synthetic_anatomy: the synthetic subjects' volume in pycortex S1's space."""

from brainldm.logs import setup_logging
from brainldm.synthetic import build_synthetic_anatomy

setup_logging(snakemake.log[0])
synthetic = snakemake.params.synthetic
build_synthetic_anatomy(
    labels_path=snakemake.output.labels,
    transform_dir=snakemake.output.transform,
    pycortex_subject=synthetic["pycortex_subject"],
    pycortex_transform=synthetic["pycortex_transform"],
    downsample=synthetic["voxel_downsample"],
    transform_name="brainldm_synthetic",
)
