"""Errors raised across the package, in one place that every layer may import."""

from __future__ import annotations

__all__ = ["NSDInputError"]


class NSDInputError(ValueError):
    """An NSD file is missing, malformed or inconsistent with another; the message names the file."""
