"""Single-trial betas of ROIs, streamed session by session.

A subject's NSD betas are ~39 GB of int16; only the voxels of the requested
ROIs are read, from the ROIs' bounding box, in reads that follow the file's
layout so that no byte of it is read twice:

* NSD's HDF5 files are chunked ``[1 1 1 750]`` (MATLAB order): one uncompressed
  chunk per voxel holding all its trials. They are read in slabs along Z of all
  trials (and so are contiguous datasets); a block of trials would touch every
  chunk of the box once per block.
* HDF5 chunked per trial (chunks shorter than the session) is read in blocks of
  whole trial chunks.
* NIfTI (X, Y, Z, trials), gzip, trials slowest: ``dataobj`` slices over blocks
  of trials, with the gzip stream kept open.

Peak memory is one read block (``BLOCK_BYTES``) plus one session of ROI voxels,
whatever the number of sessions: training rows go to the output file session by
session and test rows are running sums.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import zlib

import h5py
import nibabel as nib
import numpy as np
import pandas as pd

from . import layout
from .roi_betas import roi_betas_writer
from ..errors import NSDInputError

log = logging.getLogger(__name__)

#: Percent signal change is stored as int16 times this factor.
BETAS_SCALE = 300
#: Upper bound of one read block, in bytes of int16 bounding box.
BLOCK_BYTES = 64 * 2**20
#: Training rows copied per HDF5 write.
WRITE_ROWS = 64
ROI_FILES = {"streams", "nsdgeneral", "brainmask"}


def roi_path(root, subject: str, name: str) -> str:
    """Path of an ROI volume by name (``brainmask`` lives beside ``roi/``)."""
    return layout.brainmask(root, subject) if name == "brainmask" else layout.roi(root, subject, name)


def roi_voxels(root, subject: str, definition: dict) -> tuple[np.ndarray, tuple, np.ndarray, str]:
    """Flat voxel indices of an ROI defined by labels of an NSD ROI file.

    Parameters
    ----------
    root : path
        NSD root.
    subject : str
        ``subjXX``.
    definition : dict
        ``{"file": "streams" | "nsdgeneral" | "brainmask", "labels": [int, ...]}``.

    Returns
    -------
    voxel_index : numpy.ndarray
        Sorted flat C-order indices into the (X, Y, Z) volume.
    shape : tuple
        Volume shape (X, Y, Z).
    affine : numpy.ndarray
        4 x 4 voxel-to-world matrix of the ROI file.
    path : str
        The ROI file read.
    """
    path = roi_path(root, subject, definition["file"])
    if not os.path.exists(path):
        raise NSDInputError(f"{path}: ROI file not found (expected an NSD {definition['file']}.nii.gz)")
    image = nib.load(path)
    data = np.asarray(image.dataobj)
    if data.ndim != 3:
        raise NSDInputError(f"{path}: expected a 3-D volume, found shape {data.shape}")
    selected = np.isin(data, definition["labels"]).ravel()
    return np.flatnonzero(selected), data.shape, image.affine, path


def sessions_on_disk(betas_dir: str | os.PathLike, fmt: str = "auto") -> dict[int, str]:
    """Session number -> betas file in a subject's betas folder (HDF5 preferred under ``auto``)."""
    formats = layout.BETAS_FORMATS if fmt == "auto" else (fmt,)
    found: dict[int, str] = {}
    for f in reversed(formats):  # the first format wins
        for path in glob.glob(os.path.join(os.fspath(betas_dir), f"betas_session*.{f}")):
            match = re.fullmatch(rf"betas_session(\d+)\.{re.escape(f)}", os.path.basename(path))
            if match:
                found[int(match.group(1))] = path
    return dict(sorted(found.items()))


class BetasFile:
    """One session's betas file, HDF5 (trials, Z, Y, X) or NIfTI (X, Y, Z, trials)."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self.format = "hdf5" if self.path.endswith(".hdf5") else "nii.gz"
        try:
            if self.format == "hdf5":
                self._h5 = h5py.File(self.path, "r")
                if "betas" not in self._h5:
                    raise NSDInputError(f"{self.path}: expected a dataset 'betas', found {list(self._h5)}")
                self._data = self._h5["betas"]
                n_trials, *zyx = self._data.shape
                self.volume_shape = tuple(zyx[::-1])
            else:
                self._image = nib.load(self.path, keep_file_open=True)
                *xyz, n_trials = self._image.shape
                self._data = self._image.dataobj
                self.volume_shape = tuple(xyz)
        except NSDInputError:
            raise
        except (OSError, EOFError, zlib.error, nib.filebasedimages.ImageFileError, ValueError) as exc:
            raise NSDInputError(f"{self.path}: unreadable betas file (truncated or corrupt?): {exc}") from exc
        if len(self.volume_shape) != 3:
            raise NSDInputError(f"{self.path}: expected 4-D betas, found shape {self._data.shape}")
        self.n_trials = n_trials
        # On-disk type: NSD's are int16 (percent signal change x 300); preprocessing tools write floats.
        self.dtype = np.dtype(self._data.dtype if self.format == "hdf5" else self._image.get_data_dtype())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        if self.format == "hdf5":
            self._h5.close()
        else:
            self._image.uncache()

    def blocks(self, lo, hi, block_bytes: int) -> list[tuple[slice, int, int]]:
        """Reads of the box ``[lo, hi)`` (X, Y, Z) that follow the file's layout, each read once.

        Parameters
        ----------
        lo, hi : sequence of int
            Box corners (X, Y, Z), ``hi`` exclusive.
        block_bytes : int
            Budget of one read, in bytes of int16.

        Returns
        -------
        list of (slice, int, int)
            ``(trials, z_start, z_stop)`` per read: either blocks of trials of the
            whole box, or slabs along Z of all trials.
        """
        nx, ny, nz = (h - o for h, o in zip(hi, lo))
        chunks = self._data.chunks if self.format == "hdf5" else None
        if self.format == "hdf5" and (chunks is None or chunks[0] >= self.n_trials):
            # NSD's one chunk per voxel (or no chunks): a slab of all trials reads
            # each chunk once, a block of trials would re-read every chunk per block.
            thick = max(1, block_bytes // max(2 * self.n_trials * ny * nx, 1))
            z_chunk = chunks[1] if chunks else 1
            return [(slice(0, self.n_trials), a, b) for a, b in _aligned_ranges(lo[2], hi[2], z_chunk, thick)]
        # Trials slowest (NIfTI) or chunked per trial: blocks of whole trial chunks.
        step = max(1, block_bytes // max(2 * nx * ny * nz, 1))
        trial_chunk = chunks[0] if chunks else 1
        return [(slice(a, b), lo[2], hi[2]) for a, b in _aligned_ranges(0, self.n_trials, trial_chunk, step)]

    def read_voxels(self, trials: slice, lo, hi, local) -> np.ndarray:
        """int16 ``(n_trials, n_voxels)`` of voxels ``local`` (x, y, z arrays) of the box ``[lo, hi)``.

        The box is read in the file's own memory order and gathered with flat
        indices, which keeps the gather contiguous (fancy indexing of a
        transposed view is several times slower on whole-brain ROIs).
        """
        x, y, z = local
        nx, ny, nz = (h - o for h, o in zip(hi, lo))
        try:
            if self.format == "hdf5":  # (trials, Z, Y, X), C order
                block = self._data[trials, lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]]
                return block.reshape(len(block), -1)[:, (z * ny + y) * nx + x]
            block = np.asarray(self._data[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2], trials])
            flat = block.reshape(-1, block.shape[3], order="F" if block.flags.f_contiguous else "C")
            index = x + nx * (y + ny * z) if block.flags.f_contiguous else (x * ny + y) * nz + z
            return flat[index].T
        except (OSError, EOFError, zlib.error, ValueError) as exc:
            raise NSDInputError(f"{self.path}: read failed (truncated or corrupt?): {exc}") from exc


def _aligned_ranges(start: int, stop: int, chunk: int, step: int) -> list[tuple[int, int]]:
    """``[a, b)`` ranges covering ``[start, stop)``, ``step`` long, cut on chunk boundaries.

    ``step`` is rounded down to a multiple of ``chunk`` so that no chunk spans two
    ranges; a chunk longer than ``step`` is read in parts (the budget wins).
    """
    if step >= chunk:
        step -= step % chunk
        first = start - start % chunk + step  # chunk boundaries are multiples of chunk
    else:
        first = start + step
    edges = [start, *range(first, stop, step), stop]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


#: ``ingestion.float_betas`` and ``ingestion.non_finite_betas`` values.
FLOAT_BETAS = ("error", "percent_signal_change")
NON_FINITE_BETAS = ("error", "zero")


def read_session(path, voxel_index: np.ndarray, volume_shape, block_bytes: int = BLOCK_BYTES,
                 float_betas: str = "error", non_finite: str = "error") -> np.ndarray:
    """Betas of the given voxels for every trial of one session, in percent signal change.

    The box of the voxels is read in blocks that follow the file's layout
    (:meth:`BetasFile.blocks`): the values are the same whatever the layout.

    Parameters
    ----------
    path : path
        A ``betas_sessionNN`` file.
    voxel_index : numpy.ndarray
        Flat C-order indices into the (X, Y, Z) volume.
    volume_shape : tuple
        Expected (X, Y, Z); a file of another shape is an error.
    block_bytes : int
        Budget of one int16 read; a Z slab is at least one plane of all trials.
    float_betas : {"error", "percent_signal_change"}
        A file of floating-point betas (not NSD's int16 x 300) is refused, or read as
        percent signal change as it is (not divided by 300).
    non_finite : {"error", "zero"}
        NaN or infinite betas (possible only in float files) are refused, naming the
        first voxel and trial, or set to 0 with a warning.

    Returns
    -------
    numpy.ndarray
        ``(n_trials, n_voxels)`` float32.

    Raises
    ------
    NSDInputError
        A float file under ``float_betas="error"``, non-finite values under
        ``non_finite="error"``, a volume of another shape, an unreadable file.
    """
    with BetasFile(path) as betas:
        if tuple(betas.volume_shape) != tuple(volume_shape):
            raise NSDInputError(
                f"{path}: volume shape {betas.volume_shape} (X, Y, Z) differs from the ROI files' {tuple(volume_shape)}"
            )
        is_float = not np.issubdtype(betas.dtype, np.integer)
        if is_float and float_betas == "error":
            raise NSDInputError(
                f"{path}: expected NSD's int16 betas (percent signal change x {BETAS_SCALE}), found {betas.dtype}; "
                "if the file holds percent signal change, set ingestion.float_betas: percent_signal_change"
            )
        xyz = np.unravel_index(voxel_index, volume_shape)
        lo = [int(c.min()) for c in xyz]
        hi = [int(c.max()) + 1 for c in xyz]
        local = tuple(c - o for c, o in zip(xyz, lo))
        by_z = np.argsort(local[2], kind="stable")  # the columns of a Z slab, found by bisection
        z_sorted = local[2][by_z]
        out = np.empty((betas.n_trials, len(voxel_index)), dtype=np.float32)
        for trials, z0, z1 in betas.blocks(lo, hi, block_bytes):
            if (z0, z1) == (lo[2], hi[2]):  # the whole box: contiguous rows of the output
                out[trials] = betas.read_voxels(trials, lo, hi, local)
                continue
            cols = by_z[np.searchsorted(z_sorted, z0 - lo[2]):np.searchsorted(z_sorted, z1 - lo[2])]
            slab_local = (local[0][cols], local[1][cols], local[2][cols] - (z0 - lo[2]))
            out[trials, cols] = betas.read_voxels(trials, (lo[0], lo[1], z0), (hi[0], hi[1], z1), slab_local)
    if not is_float:
        out /= BETAS_SCALE
        return out
    bad = ~np.isfinite(out)
    if bad.any():
        trial, column = (int(k[0]) for k in np.nonzero(bad))
        where = tuple(int(c[column]) for c in np.unravel_index(voxel_index, volume_shape))
        what = (f"{path}: {int(bad.sum())} non-finite betas (NaN or infinite) in {int(bad.any(axis=0).sum())} "
                f"voxels, the first at voxel (x, y, z) {where}, trial {trial + 1}")
        if non_finite == "error":
            raise NSDInputError(f"{what}; expected finite values (set ingestion.non_finite_betas: zero to set them to 0)")
        log.warning("%s: set to 0", what)
        out[bad] = 0
    return out


def zscore_columns(x: np.ndarray, block: int = 8192) -> np.ndarray:
    """Z-score each column in place; constant columns (dead voxels) become 0, never NaN.

    Columns are processed in blocks so that temporaries stay small (a whole-brain
    session is ~1 GB of float32; a float64 copy of it would double that).
    """
    for start in range(0, x.shape[1], block):
        cols = x[:, start:start + block]
        mean = cols.mean(axis=0, dtype=np.float64)
        sd = cols.std(axis=0, dtype=np.float64)
        cols -= mean.astype(x.dtype)
        np.divide(cols, sd.astype(x.dtype), out=cols, where=sd > 0)
        cols[:, sd == 0] = 0
    return x


def stream_roi_betas(
    trials: pd.DataFrame,
    session_files: dict[int, str],
    rois: dict[str, np.ndarray],
    volume_shape,
    affine: np.ndarray,
    out_paths: dict[str, str],
    zscore: bool = True,
    attrs: dict | None = None,
    float_betas: str = "error",
    non_finite: str = "error",
) -> None:
    """Write train and test matrices of each ROI, reading each session once.

    Parameters
    ----------
    trials : pandas.DataFrame
        The subject's trial table with ``split`` (see :mod:`brainldm.nsd.design`).
    session_files : dict
        Session -> betas file, for every session in ``trials``.
    rois : dict
        ROI name -> flat voxel indices.
    volume_shape, affine
        The subject's volume (from its ROI files).
    out_paths : dict
        ROI name -> output HDF5.
    zscore : bool
        Z-score each voxel within each session (before test averaging).
    attrs : dict, optional
        Provenance attributes stored in every output.
    float_betas, non_finite : str
        See :func:`read_session`.
    """
    for name, index in rois.items():
        if len(index) == 0:
            raise NSDInputError(f"ROI {name!r} selects no voxel")
    union = np.unique(np.concatenate(list(rois.values())))
    columns = {name: np.searchsorted(union, index) for name, index in rois.items()}
    train = trials[trials["split"] == "train"]
    test_ids = np.unique(trials.loc[trials["split"] == "test", "nsd_id"])
    test_sums = {name: np.zeros((len(test_ids), len(idx)), np.float32) for name, idx in rois.items()}
    test_counts = np.zeros(len(test_ids), dtype=np.int64)
    with contextlib.ExitStack() as stack:
        outputs = {name: stack.enter_context(roi_betas_writer(path, len(train), len(rois[name])))
                   for name, path in out_paths.items()}
        row = 0
        for session, session_trials in trials.groupby("session", sort=True):
            path = session_files[session]
            betas = read_session(path, union, volume_shape, float_betas=float_betas, non_finite=non_finite)
            used = session_trials["trial_in_session"].to_numpy()
            if betas.shape[0] != len(session_trials) or used.max() >= betas.shape[0]:
                raise NSDInputError(
                    f"{path}: expected {len(session_trials)} trials (responses.tsv, session {session}), "
                    f"found {betas.shape[0]}"
                )
            if zscore:
                zscore_columns(betas)
            is_train = (session_trials["split"] == "train").to_numpy()
            test_rows = np.searchsorted(test_ids, session_trials.loc[~is_train, "nsd_id"].to_numpy())
            np.add.at(test_counts, test_rows, 1)
            train_rows, test_trials = used[is_train], used[~is_train]
            for name, writer in outputs.items():
                whole = len(columns[name]) == len(union)  # the ROI is the union: no column copy
                selected = betas if whole else betas[:, columns[name]]
                for start in range(0, len(train_rows), WRITE_ROWS):  # bounded copies
                    writer.write_train(row + start, selected[train_rows[start:start + WRITE_ROWS]])
                np.add.at(test_sums[name], test_rows, selected[test_trials])
                del selected
            del betas  # before the next session is read: one session in memory, not two
            row += len(train_rows)
            log.info("session %d: %d trials (%d train) from %s", session, len(session_trials), len(train_rows), path)
        for name, writer in outputs.items():
            writer.finish(
                train_ids=train["nsd_id"].to_numpy(), train_sessions=train["session"].to_numpy(),
                test_betas=test_sums[name] / np.maximum(test_counts, 1)[:, None], test_ids=test_ids,
                test_repetitions=test_counts, voxel_index=rois[name], volume_shape=volume_shape, affine=affine,
                roi=name, units="z-scored per voxel within session" if zscore else "percent signal change",
                attrs=attrs,
            )

