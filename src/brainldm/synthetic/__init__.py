"""The embedded default: a synthetic NSD tree with planted truth and tiny Stable Diffusion models."""

from .anatomy import build_synthetic_anatomy
from .nsd_tree import SyntheticDesign, build_synthetic_stimuli, build_synthetic_subject

__all__ = ["SyntheticDesign", "build_synthetic_anatomy", "build_synthetic_stimuli", "build_synthetic_subject"]
