"""Natural Scenes Dataset: file layout and readers."""

from . import layout

__all__ = ["layout"]
