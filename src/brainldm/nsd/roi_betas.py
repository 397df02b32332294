"""The ROI-betas file (``results/{subject}/betas/{roi}.h5``): its one writer and its one reader.

Written by ingestion (:func:`brainldm.nsd.betas.stream_roi_betas`), read by the decoders, the
encoding models, the tests and the benchmarks, always through :class:`RoiBetasWriter` and
:class:`RoiBetas`, so that names and shapes are checked in one place.

Layout:

* ``train/betas`` ``(n_train, n_voxels)`` float32: one row per training trial, in the trial
  table's order; ``train/nsd_ids`` (0-based 73k id per row), ``train/session``;
* ``test/betas`` ``(n_test, n_voxels)`` float32: the average over each test image's repetitions;
  ``test/nsd_ids`` (sorted, unique), ``test/n_repetitions``;
* ``voxel_index``: flat C-order indices into the ``(X, Y, Z)`` volume of attribute
  ``volume_shape``; ``affine``: its 4 x 4 voxel-to-world matrix;
* attributes ``roi``, ``units`` and the provenance the writer is given.

``train/betas`` is chunked in tiles of :data:`VOXELS_PER_CHUNK` voxels (about 4 MB each), so
that a batch of voxels over all trials (an encoding model's read) is a few whole-chunk reads,
not one read per trial: a row chunk of NSD's ~300,000 brain voxels would be 1.2 MB per trial.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import h5py
import numpy as np

from ..errors import IntermediateFileError
from ..files import atomic_path

__all__ = ["VOXELS_PER_CHUNK", "RoiBetas", "RoiBetasWriter", "roi_betas_writer", "write_roi_betas"]

#: Voxels per chunk of ``train/betas``: the encoding's default voxel batch, so a batch is whole chunks.
VOXELS_PER_CHUNK = 4096
#: Bytes of float32 per chunk of ``train/betas``.
CHUNK_BYTES = 1 << 22

_DATASETS = ("train/betas", "train/nsd_ids", "test/betas", "test/nsd_ids", "voxel_index", "affine")


def train_chunks(n_train: int, n_voxels: int) -> tuple[int, int] | None:
    """Chunk shape of ``train/betas``: :data:`VOXELS_PER_CHUNK` voxels x the rows of :data:`CHUNK_BYTES`."""
    if n_train == 0 or n_voxels == 0:
        return None
    columns = min(n_voxels, VOXELS_PER_CHUNK)
    return max(1, min(n_train, CHUNK_BYTES // (4 * columns))), columns


@dataclass(frozen=True)
class RoiBetas:
    """One ROI-betas file's ids, voxels and volume, checked once; the betas stay on disk.

    Use :meth:`read` to open a file, :meth:`betas` for the two matrices as HDF5 datasets (read in
    column batches) and :meth:`arrays` for both in memory.

    Attributes
    ----------
    path : str
    roi : str
        The ROI's name (``""`` if the file does not record it).
    units : str
    train_ids : numpy.ndarray
        ``(n_train,)`` 0-based 73k id of each training trial.
    test_ids : numpy.ndarray
        ``(n_test,)`` sorted 0-based 73k ids of the test images.
    voxel_index : numpy.ndarray
        ``(n_voxels,)`` flat C-order indices into ``volume_shape``.
    volume_shape : tuple of int or None
    affine : numpy.ndarray
    train_sessions, test_repetitions : numpy.ndarray or None
        Where the file has them.
    """

    path: str
    roi: str
    units: str
    train_ids: np.ndarray
    test_ids: np.ndarray
    voxel_index: np.ndarray
    volume_shape: tuple | None
    affine: np.ndarray
    train_sessions: np.ndarray | None = None
    test_repetitions: np.ndarray | None = None

    @property
    def n_voxels(self) -> int:
        return len(self.voxel_index)

    @classmethod
    def read(cls, path: str | os.PathLike, min_test_images: int = 1) -> RoiBetas:
        """Open ``path`` and check its datasets, shapes and ids against each other.

        Parameters
        ----------
        path : path
        min_test_images : int
            Fewest test images the caller can use (p-values of a correlation need 3).

        Raises
        ------
        IntermediateFileError
            Naming the file and what is missing or inconsistent: a dataset, an ROI without
            voxels, betas columns other than the voxels, rows other than the ids, too few
            test images, unsorted or repeated test ids.
        """
        path = os.fspath(path)
        if not os.path.exists(path):
            raise IntermediateFileError(f"{path}: ROI-betas file not found")
        with h5py.File(path, "r") as h5:
            missing = [name for name in _DATASETS if name not in h5]
            if missing:
                raise IntermediateFileError(f"{path}: dataset {missing[0]!r} missing (not an ROI-betas file of "
                                            f"ingestion?); found {sorted(_names(h5))}")
            train_shape, test_shape = h5["train/betas"].shape, h5["test/betas"].shape
            shape = h5.attrs.get("volume_shape")
            found = cls(
                path=path, roi=str(h5.attrs.get("roi", "")), units=str(h5.attrs.get("units", "")),
                train_ids=h5["train/nsd_ids"][()], test_ids=h5["test/nsd_ids"][()],
                voxel_index=h5["voxel_index"][()], affine=h5["affine"][()],
                volume_shape=None if shape is None else tuple(int(n) for n in shape),
                train_sessions=h5["train/session"][()] if "train/session" in h5 else None,
                test_repetitions=h5["test/n_repetitions"][()] if "test/n_repetitions" in h5 else None,
            )
        found._check(train_shape, test_shape, min_test_images)
        return found

    def _check(self, train_shape, test_shape, min_test_images: int) -> None:
        roi = f" {self.roi!r}" if self.roi else ""
        if len(train_shape) != 2 or len(test_shape) != 2:
            raise IntermediateFileError(f"{self.path}: betas must be 2-D (rows, voxels), found train "
                                        f"{train_shape} and test {test_shape}")
        if self.n_voxels == 0 or train_shape[1] == 0:
            raise IntermediateFileError(f"{self.path}: the ROI mask{roi} selects no voxel (0 betas columns)")
        if train_shape[1] != self.n_voxels or test_shape[1] != self.n_voxels:
            raise IntermediateFileError(f"{self.path}: {self.n_voxels} voxels in voxel_index but betas have "
                                        f"{train_shape[1]} (train) and {test_shape[1]} (test) columns")
        for split, shape, ids in (("train", train_shape, self.train_ids), ("test", test_shape, self.test_ids)):
            if shape[0] != len(ids):
                raise IntermediateFileError(f"{self.path}: {split}/betas has {shape[0]} rows but {split}/nsd_ids "
                                            f"{len(ids)} ids")
        if len(self.test_ids) > 1 and not np.all(np.diff(self.test_ids) > 0):
            raise IntermediateFileError(f"{self.path}: test/nsd_ids must be sorted and unique (one row per image)")
        if len(self.test_ids) < min_test_images:
            raise IntermediateFileError(f"{self.path}: {len(self.test_ids)} test images; at least "
                                        f"{min_test_images} needed")
        if self.volume_shape is not None and (
                self.voxel_index.min() < 0 or self.voxel_index.max() >= int(np.prod(self.volume_shape))):
            raise IntermediateFileError(f"{self.path}: voxel_index outside the volume {self.volume_shape}")

    @contextlib.contextmanager
    def betas(self):
        """Yield ``(train, test)``: the two betas matrices as HDF5 datasets (read a batch of columns at a time)."""
        with h5py.File(self.path, "r") as h5:
            yield h5["train/betas"], h5["test/betas"]

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(train, test)`` betas in memory, float32."""
        with self.betas() as (train, test):
            return np.asarray(train[()], np.float32), np.asarray(test[()], np.float32)


def _names(h5: h5py.File) -> set[str]:
    names: set[str] = set()
    h5.visit(names.add)
    return names


class RoiBetasWriter:
    """Fills one ROI-betas file: training rows as they come, the test average and ids at the end.

    Made by :func:`roi_betas_writer`, which renames the file into place only after
    :meth:`finish` and a clean exit.
    """

    def __init__(self, h5: h5py.File, n_train: int, n_voxels: int):
        self._h5, self.n_train, self.n_voxels, self.finished = h5, int(n_train), int(n_voxels), False
        chunks = train_chunks(self.n_train, self.n_voxels)
        self._train = h5.create_dataset("train/betas", shape=(self.n_train, self.n_voxels), dtype=np.float32,
                                        chunks=chunks, track_times=False)
        # Rows are written a whole row of chunks at a time: HDF5 reads back and rewrites a chunk for
        # every partial write (4.6x the file's bytes read and written, measured at NSD's size).
        self._buffer = np.empty((chunks[0] if chunks else 0, self.n_voxels), np.float32)
        self._buffered = 0  # rows in the buffer
        self._written = 0  # rows in the file

    def write_train(self, start: int, rows: np.ndarray) -> None:
        """Training rows ``start, start + 1, ...`` of the trial table's training trials, in order."""
        rows = np.asarray(rows)
        if rows.ndim != 2 or rows.shape[1] != self.n_voxels or start + len(rows) > self.n_train:
            raise ValueError(f"training rows {start}-{start + len(rows)} of shape {rows.shape}: expected at most "
                             f"{self.n_train} rows of {self.n_voxels} voxels")
        if start != self._written + self._buffered:
            raise ValueError(f"training rows from {start}: expected the next row, {self._written + self._buffered}")
        if not self._buffer.size:  # no voxels: nothing to store
            self._written += len(rows)
            return
        while len(rows):
            taken = min(len(rows), len(self._buffer) - self._buffered)
            self._buffer[self._buffered:self._buffered + taken] = rows[:taken]
            self._buffered, rows = self._buffered + taken, rows[taken:]
            if self._buffered == len(self._buffer):
                self._flush()

    def _flush(self) -> None:
        if self._buffered:
            self._train[self._written:self._written + self._buffered] = self._buffer[:self._buffered]
            self._written, self._buffered = self._written + self._buffered, 0

    def finish(self, *, train_ids, test_betas, test_ids, voxel_index, volume_shape, affine, roi: str,
               units: str, train_sessions=None, test_repetitions=None, attrs: dict | None = None) -> None:
        """Everything but the training rows; see the module's layout."""
        self._flush()
        if self._written != self.n_train:
            raise ValueError(f"{self._written} training rows written, expected {self.n_train}")
        self._buffer = None
        h5, test_betas = self._h5, np.asarray(test_betas, np.float32)
        voxel_index = np.asarray(voxel_index)
        if len(train_ids) != self.n_train or test_betas.shape != (len(test_ids), self.n_voxels) \
                or len(voxel_index) != self.n_voxels:
            raise ValueError(f"{len(train_ids)} training ids, test betas {test_betas.shape} for {len(test_ids)} "
                             f"images and {len(voxel_index)} voxels: expected {self.n_train} ids and "
                             f"{self.n_voxels} voxels")
        datasets = {"train/nsd_ids": train_ids, "train/session": train_sessions, "test/betas": test_betas,
                    "test/nsd_ids": test_ids, "test/n_repetitions": test_repetitions, "voxel_index": voxel_index,
                    "affine": np.asarray(affine, dtype=np.float64)}
        for name, data in datasets.items():
            if data is not None:
                h5.create_dataset(name, data=np.asarray(data), track_times=False)
        h5.attrs["volume_shape"] = tuple(int(n) for n in volume_shape)
        h5.attrs["roi"] = roi
        h5.attrs["units"] = units
        h5.attrs["nsd_ids"] = "0-based 73k ids"
        h5.attrs["voxel_index"] = "flat C-order index into the (X, Y, Z) volume"
        for key, value in (attrs or {}).items():
            h5.attrs[key] = value
        self.finished = True


@contextlib.contextmanager
def roi_betas_writer(path: str | os.PathLike, n_train: int, n_voxels: int):
    """Yield a :class:`RoiBetasWriter` of ``path``, written atomically (nothing at ``path`` on failure).

    Raises
    ------
    RuntimeError
        The block ended without :meth:`RoiBetasWriter.finish` (the file would lack its ids).
    """
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        writer = RoiBetasWriter(h5, n_train, n_voxels)
        yield writer
        if not writer.finished:
            raise RuntimeError(f"{path}: ROI-betas file left without its ids and test betas (finish not called)")


def write_roi_betas(path: str | os.PathLike, train_betas, train_ids, test_betas, test_ids, voxel_index,
                    volume_shape, affine, roi: str, units: str = "z-scored per voxel within session",
                    train_sessions=None, test_repetitions=None, attrs: dict | None = None) -> None:
    """Write a whole ROI-betas file from arrays in memory (tests and benchmarks; ingestion streams)."""
    train_betas = np.asarray(train_betas, np.float32)
    with roi_betas_writer(path, *train_betas.shape) as writer:
        writer.write_train(0, train_betas)
        writer.finish(train_ids=train_ids, test_betas=test_betas, test_ids=test_ids, voxel_index=voxel_index,
                      volume_shape=volume_shape, affine=affine, roi=roi, units=units,
                      train_sessions=train_sessions, test_repetitions=test_repetitions, attrs=attrs)
