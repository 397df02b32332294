"""Stable Diffusion: loading, per-image features (z, c, zc, U-Net activations).

``brainldm.ldm.names`` is imported by the Snakefile at DAG time and must not
import torch; the heavy modules are therefore loaded lazily on first use of
their names here.
"""

from __future__ import annotations

from ..lazy import lazy_getattr
from .names import feature_names, feature_specs

__all__ = [
    "feature_names",
    "feature_specs",
    "load_model",
    "extract_features",
    "FeatureExtractor",
]

_LAZY = {
    "load_model": "load",
    "extract_features": "features",
    "FeatureExtractor": "features",
}

__getattr__ = lazy_getattr(__name__, _LAZY)
