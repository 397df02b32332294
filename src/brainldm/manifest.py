"""Manifests: every output file of a subject with its size and SHA-256, as TSV.

A manifest is the target that builds (or rebuilds) one subject, and the record that
compares runs: two runs of the same configuration give identical manifests.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from .files import atomic_path

log = logging.getLogger(__name__)

__all__ = ["file_digest", "content_digest", "expand_paths", "write_subject_manifest", "read_manifest"]

_CHUNK = 1 << 20


def file_digest(path) -> str:
    """SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _data_bytes(data) -> bytes:
    """The bytes of an array's values; variable-length strings by value (object arrays hold pointers)."""
    import numpy as np

    data = np.asarray(data)
    if data.dtype.kind == "O":
        return b"\0".join(v if isinstance(v, bytes) else str(v).encode() for v in data.ravel())
    return np.ascontiguousarray(data).tobytes()


def content_digest(path) -> str:
    """SHA-256 of what a file holds: for HDF5 its datasets and attributes, else its bytes.

    HDF5 stores creation times in group headers, so two files with the same data can
    differ in bytes; this digest compares the data.
    """
    if Path(path).suffix not in (".h5", ".hdf5"):
        return file_digest(path)
    import h5py
    import numpy as np

    digest = hashlib.sha256()

    def add(name, item):
        digest.update(name.encode())
        for key in sorted(item.attrs):
            digest.update(key.encode() + repr(item.attrs[key]).encode())
        if isinstance(item, h5py.Dataset):
            digest.update(str((item.dtype.newbyteorder("="), item.shape)).encode())  # as numpy reads it
            if item.ndim == 0:
                digest.update(_data_bytes(item[()]))
                return
            # blocks of rows (the bytes of the whole array, in order), never the whole dataset
            row_bytes = max(item.dtype.itemsize * int(np.prod(item.shape[1:])), 1)
            step = max(_CHUNK * 64 // row_bytes, 1)
            for start in range(0, item.shape[0], step):
                digest.update(_data_bytes(item[start:start + step]))

    with h5py.File(path, "r") as h5:
        add("/", h5)
        h5.visititems(add)
    return digest.hexdigest()


def expand_paths(paths: Iterable) -> list[Path]:
    """Files of ``paths``, folders expanded into their files (sorted, hidden files skipped).

    Raises
    ------
    FileNotFoundError
        A path that does not exist (named).
    """
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"manifest: {path} does not exist")
    return files


def write_subject_manifest(paths: Iterable, out_tsv) -> None:
    """Write ``path``, ``bytes`` and ``sha256`` of every file of ``paths`` (folders expanded).

    ``sha256`` is :func:`content_digest`: of the bytes, or of the data for HDF5 files.

    Parameters
    ----------
    paths : iterable of path
        Output files and folders (relative paths are written as given).
    out_tsv : path
        The manifest (written atomically).
    """
    files = expand_paths(paths)
    with atomic_path(out_tsv) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["path", "bytes", "sha256"])
        for path in files:
            writer.writerow([os.fspath(path), path.stat().st_size, content_digest(path)])
    log.info("manifest of %d files -> %s", len(files), out_tsv)


def read_manifest(path) -> dict[str, str]:
    """Path -> SHA-256 of a manifest written by :func:`write_subject_manifest`."""
    with open(path, newline="") as handle:
        return {row["path"]: row["sha256"] for row in csv.DictReader(handle, delimiter="\t")}
