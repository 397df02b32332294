"""Names of a package imported on first use, so that importing the package does not import torch."""

from __future__ import annotations

import importlib


def lazy_getattr(package: str, names: dict[str, str]):
    """A module ``__getattr__`` that imports ``names[name]`` (a submodule of ``package``) on first use.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    names : dict
        Public name -> the submodule (relative to ``package``) that defines it.
    """

    def __getattr__(name: str):
        if name in names:
            return getattr(importlib.import_module(f".{names[name]}", package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
