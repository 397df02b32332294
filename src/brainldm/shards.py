"""Resumable shards: a long job writes its work in shards, each fingerprinted by everything that made it.

A shard is an HDF5 file written atomically, with attributes ``complete`` and ``fingerprint``
(a SHA-256 of the model, the settings that change values and the inputs of its rows) and a
dataset ``nsd_ids``. A rerun keeps a shard only if all three match, so a killed run resumes
where it stopped, and a changed seed, model or input recomputes instead of mixing old and new.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from pathlib import Path

import h5py
import numpy as np

__all__ = ["fingerprint", "shard_is_complete", "mark_complete", "clean_partial_shards"]

log = logging.getLogger(__name__)


def fingerprint(base, *arrays) -> str:
    """SHA-256 of ``base`` (JSON-able) and the bytes of ``arrays`` (each ``np.ascontiguousarray``'d)."""
    digest = hashlib.sha256(json.dumps(base, sort_keys=True, ensure_ascii=True, default=str).encode())
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def shard_is_complete(path: Path, expected: str, ids: np.ndarray) -> bool:
    """Whether ``path`` is a complete shard of exactly these ids with this fingerprint (logged when not)."""
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as h5:
            if not h5.attrs.get("complete", False) or h5.attrs.get("fingerprint") != expected:
                log.warning("%s: made by another model, configuration or input; recomputing it", path)
                return False
            if not np.array_equal(h5["nsd_ids"][()], ids):
                log.warning("%s: holds other images; recomputing it", path)
                return False
            return True
    except (OSError, KeyError) as exc:
        log.warning("%s: unreadable (%s); recomputing it", path, exc)
        return False


def mark_complete(h5: h5py.File, expected: str) -> None:
    """Last step of writing a shard (inside its atomic write)."""
    h5.attrs["fingerprint"] = expected
    h5.attrs["complete"] = True


def clean_partial_shards(shard_dir: Path) -> None:
    """Remove temporary shard files left by a killed run (``atomic_path``'s ``.shard_*.part.h5``)."""
    for stale in Path(shard_dir).glob(".shard_*.part.h5"):
        with contextlib.suppress(OSError):
            stale.unlink()
