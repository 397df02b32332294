"""The embedded default: a synthetic NSD tree with planted truth and tiny Stable Diffusion models."""

from .anatomy import build_anatomy
from .nsd_tree import SyntheticDesign, build_stimuli, build_subject

__all__ = ["SyntheticDesign", "build_anatomy", "build_stimuli", "build_subject"]
