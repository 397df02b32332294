"""File writing that never leaves a truncated file looking finished."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .errors import IntermediateFileError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary sibling path that is renamed onto ``path`` on success.

    The temporary name keeps the final suffix (``.nii.gz``, ``.hdf5``) so that
    libraries choosing a format by extension behave the same. On any exception
    the temporary file or folder is removed and ``path`` is left untouched.

    Parameters
    ----------
    path : str or os.PathLike
        The final file or folder.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(final.suffixes)
    stem = final.name[: len(final.name) - len(suffix)] if suffix else final.name
    fd, tmp_name = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".part{suffix}", dir=final.parent)
    os.close(fd)
    os.unlink(tmp_name)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if final.is_dir() and not final.is_symlink():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException as exc:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        if is_disk_full(exc):
            raise DiskFullError(
                f"{final.parent}: disk full while writing {final.name} "
                f"({_free_space(final.parent)} free); free space or move the working directory, then rerun"
            ) from None
        raise


def stable_link(target: str | os.PathLike, link: str | os.PathLike) -> str | None:
    """Point the symbolic link ``link`` at the folder ``target``; return the target it had before.

    Inputs named through a link keep their paths when the data move, so a copy of a
    tree with the same files (and times) reruns nothing. The link is replaced
    atomically; a real file or folder at ``link`` is an error.

    Returns
    -------
    str or None
        The previous target (None when the link is new).
    """
    link = Path(link)
    target = os.path.realpath(target)  # also when the configured path is this link itself
    previous = None
    if link.is_symlink():
        previous = os.readlink(link)
        if previous == target:
            return previous
    elif link.exists():
        raise FileExistsError(f"{link}: expected a symbolic link to {target}, found a real "
                              f"{'folder' if link.is_dir() else 'file'}; move it away")
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.{os.getpid()}.link")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)
    return previous


class DiskFullError(OSError):
    """The disk filled up while an output was written (nothing looking finished was left)."""


def is_disk_full(exc: BaseException) -> bool:
    """True for ENOSPC, also when HDF5 reports it inside another error's text (``errno = 28``)."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return True
        text = str(exc)
        if f"errno = {errno.ENOSPC}," in text or "No space left on device" in text:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _free_space(folder: Path) -> str:
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return "unknown"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if free < 1000 or unit == "TB":
            return f"{free:.0f} {unit}" if unit == "B" else f"{free:.1f} {unit}"
        free /= 1000


def rows_of_ids(ids: np.ndarray, wanted: np.ndarray, path) -> np.ndarray:
    """Row of each wanted 0-based 73k id in a file whose ``nsd_ids`` are ``ids`` (sorted).

    Raises a ValueError naming ``path`` and the ids it lacks.
    """
    ids, wanted = np.asarray(ids), np.asarray(wanted)
    rows = np.clip(np.searchsorted(ids, wanted), 0, max(len(ids) - 1, 0))
    found = ids[rows] == wanted if len(ids) else np.zeros(len(wanted), bool)
    if not found.all():
        missing = np.unique(wanted[~found])
        raise ValueError(f"{path}: no features for 73k ids {missing[:10].tolist()} ({len(missing)} in all)")
    return rows


def require_contents(h5, path, kind: str, datasets=(), attrs=()) -> None:
    """Raise :class:`~brainldm.errors.IntermediateFileError` naming ``path`` and what of a ``kind`` file it lacks."""
    missing = [name for name in datasets if name not in h5] + [f"attribute {a!r}" for a in attrs if a not in h5.attrs]
    if missing:
        raise IntermediateFileError(f"{path}: not a {kind} (missing {', '.join(missing)})")


def check_image_rows(path, name: str, data_shape, nsd_ids: np.ndarray, image_shape) -> None:
    """A ``(n_images, values)`` dataset ``name``: one row per id, ``prod(image_shape)`` values, ids sorted and unique.

    Raises
    ------
    IntermediateFileError
        Naming ``path`` and what disagrees.
    """
    if len(data_shape) != 2 or data_shape[0] != len(nsd_ids):
        raise IntermediateFileError(f"{path}: {name} of shape {tuple(data_shape)} for {len(nsd_ids)} nsd_ids "
                                    "(expected one row per image)")
    if int(np.prod(image_shape)) != data_shape[1]:
        raise IntermediateFileError(f"{path}: {data_shape[1]} values per image, but attribute shape "
                                    f"{tuple(image_shape)} holds {int(np.prod(image_shape))}")
    if nsd_ids.ndim != 1 or np.any(np.diff(nsd_ids) <= 0):
        raise IntermediateFileError(f"{path}: nsd_ids must be sorted and unique")
