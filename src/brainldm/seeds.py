"""Seeds derived from stable identifiers, never from processing order."""

from __future__ import annotations

import hashlib

import numpy as np


def derive_seed(*keys: object) -> int:
    """Return a 63-bit seed derived from a sequence of stable keys.

    Parameters
    ----------
    *keys : object
        Identifiers such as a base seed, a subject name, an image id or a sample
        index. Their ``str`` forms are hashed, so ``derive_seed(0, "subj01", 5)``
        is the same in every process, on every machine and in every order.

    Returns
    -------
    int
        A non-negative integer below ``2**63``.
    """
    text = "\x1f".join(str(key) for key in keys)
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def rng_for(*keys: object) -> np.random.Generator:
    """Return a NumPy generator seeded by :func:`derive_seed` of ``keys``."""
    return np.random.default_rng(derive_seed(*keys))
