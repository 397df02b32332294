"""brainldm: fMRI decoding and encoding with latent diffusion models (Takagi & Nishimoto, CVPR 2023).

The package holds the logic of every workflow stage; the Snakemake rules only
unpack their inputs and call one function here.
"""

from importlib.metadata import PackageNotFoundError, version

from .config import ConfigError, validate_config
from .seeds import derive_seed, rng_for

try:
    __version__ = version("brainldm")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["ConfigError", "validate_config", "derive_seed", "rng_for", "__version__"]
