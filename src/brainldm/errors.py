"""Errors raised across the package, in one place that every layer may import."""

from __future__ import annotations

__all__ = ["IntermediateFileError", "NSDInputError"]


class NSDInputError(ValueError):
    """An NSD file is missing, malformed or inconsistent with another; the message names the file."""


class IntermediateFileError(ValueError):
    """A file the pipeline wrote (and another stage reads) lacks a dataset or has shapes that disagree;
    the message names the file."""
