"""The feature file (``results/features/{feature}.h5``): its layout, its writers and its one reader.

Written by the gathering of the feature jobs (:func:`brainldm.ldm.gather.gather_features`, row
blocks streamed into :func:`create_feature_file`), read by the PCA and the decoders, and written
whole by the tests and the benchmarks (:func:`write_feature_file`); :class:`FeatureFile` checks
names and shapes in one place.

Layout:

* ``features`` ``(n_images, n_values)``: one row per image, its array flattened in C order
  (float32; the U-Net blocks in ``features.unet_dtype``), chunked by :func:`feature_chunks`;
* ``nsd_ids``: the images' 0-based 73k ids, sorted and unique;
* attribute ``shape``: one image's array (``features[i].reshape(shape)``), and the provenance
  the writer is given (feature, kind, model, sampler, steps...).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import h5py
import numpy as np

from .files import atomic_path, check_image_rows, require_contents

__all__ = ["FeatureFile", "feature_chunks", "create_feature_file", "write_feature_file"]

#: Columns per chunk of a feature file (64 KB of a float32 row).
CHUNK_COLUMNS = 16384


def feature_chunks(n_rows: int, n_values: int) -> tuple[int, int]:
    """HDF5 chunks of a feature file: about 4 MB of float32, up to :data:`CHUNK_COLUMNS` columns wide.

    Written by rows (64 rows of a U-Net feature per chunk row), read by :mod:`brainldm.pca` in
    column blocks: HDF5 reads whole chunks, so chunks of whole rows would make every column
    block read the whole file.
    """
    cols = max(1, min(n_values, CHUNK_COLUMNS))
    return max(1, min(n_rows, (1 << 20) // cols)), cols


@dataclass(frozen=True)
class FeatureFile:
    """One feature file's ids, image shape and attributes, checked once; the features stay on disk.

    Attributes
    ----------
    path : str
    nsd_ids : numpy.ndarray
        Sorted, unique 0-based 73k ids, one per row.
    shape : tuple of int
        One image's array; ``prod(shape)`` values per row.
    attrs : dict
        All attributes of the file.
    """

    path: str
    nsd_ids: np.ndarray
    shape: tuple[int, ...]
    attrs: dict = field(repr=False)

    @classmethod
    def read(cls, path) -> FeatureFile:
        """Open ``path`` and check it.

        Raises
        ------
        IntermediateFileError
            A missing dataset or attribute, ids that are not sorted and unique, or rows or
            values per row that disagree with the ids or the shape; the message names the file.
        """
        path = os.fspath(path)
        with h5py.File(path, "r") as h5:
            require_contents(h5, path, "feature file", ("features", "nsd_ids"), ("shape",))
            data_shape, ids, attrs = h5["features"].shape, h5["nsd_ids"][()], dict(h5.attrs)
        shape = tuple(int(n) for n in np.atleast_1d(attrs["shape"]))
        check_image_rows(path, "features", data_shape, ids, shape)
        return cls(path, ids, shape, attrs)

    @property
    def n_values(self) -> int:
        """Values per image (the columns of ``features``)."""
        return int(np.prod(self.shape))

    @contextlib.contextmanager
    def features(self):
        """The ``features`` dataset, open for reads in blocks (rows or columns) while in the block."""
        with h5py.File(self.path, "r") as h5:
            yield h5["features"]


def create_feature_file(h5: h5py.File, n_values: int, dtype, nsd_ids, shape, attrs: Mapping) -> h5py.Dataset:
    """Lay out a feature file in the open, empty ``h5`` and return its ``features`` dataset to fill by rows.

    Raises
    ------
    ValueError
        ``shape`` that does not hold ``n_values``, or ids that are not sorted and unique.
    """
    nsd_ids = np.asarray(nsd_ids)
    shape = np.asarray(shape, dtype=np.int64)
    if int(np.prod(shape)) != n_values or np.any(np.diff(nsd_ids) <= 0):
        raise ValueError(f"{h5.filename}: a feature of shape {tuple(shape)} for {n_values} values per image and "
                         "sorted, unique nsd_ids expected")
    data = h5.create_dataset("features", shape=(len(nsd_ids), n_values), dtype=dtype,
                             chunks=feature_chunks(len(nsd_ids), n_values))
    h5.create_dataset("nsd_ids", data=nsd_ids)
    h5.attrs.update({"shape": shape, **dict(attrs)})
    return data


def write_feature_file(path, features: np.ndarray, nsd_ids, shape=None, attrs: Mapping | None = None) -> None:
    """Write a whole feature file atomically: ``features`` ``(n_images, *shape)`` or ``(n_images, n_values)``.

    ``shape`` defaults to ``features.shape[1:]``.
    """
    features = np.asarray(features)
    shape = tuple(features.shape[1:]) if shape is None else tuple(shape)
    flat = features.reshape(len(features), -1)
    if len(flat) != len(nsd_ids):
        raise ValueError(f"{path}: {len(flat)} rows of features for {len(nsd_ids)} nsd_ids")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        create_feature_file(h5, flat.shape[1], flat.dtype, nsd_ids, shape, attrs or {})[...] = flat
