"""The decoded-latent file (``results/{subject}/decoding/{target}.h5``): its one writer and its one reader.

Written by the decoders (:func:`brainldm.decoding.decode_latent`), read by reconstruction and its
gathering, the tests and the benchmarks, always through :func:`write_decoded_latent` and
:class:`DecodedLatent`, so that names and shapes are checked in one place.

Layout:

* ``predictions`` ``(n_test, d)`` float32: one row per test image, the latent flattened in C order;
* ``nsd_ids``: the test images' 0-based 73k ids, sorted and unique;
* attribute ``shape``: the latent of one image (e.g. z ``(4, 64, 64)``, c ``(77, 768)``), whose
  product is ``d``;
* any further datasets and attributes the writer is given (the decoder's alphas and scores).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import h5py
import numpy as np

from .files import atomic_path, check_image_rows, require_contents

__all__ = ["DecodedLatent", "write_decoded_latent"]


@dataclass(frozen=True)
class DecodedLatent:
    """One decoded-latent file's test predictions, ids and latent shape, checked once.

    Attributes
    ----------
    path : str
    predictions : numpy.ndarray or None
        ``(n_test, d)``; None when read with ``predictions=False`` (the ids alone).
    nsd_ids : numpy.ndarray
        Sorted, unique 0-based 73k ids, one per row.
    shape : tuple of int
        One image's latent; ``prod(shape) == d``.
    """

    path: str
    predictions: np.ndarray | None
    nsd_ids: np.ndarray
    shape: tuple[int, ...]

    @classmethod
    def read(cls, path, predictions: bool = True) -> DecodedLatent:
        """Open ``path`` and check it.

        Raises
        ------
        IntermediateFileError
            A missing dataset or attribute, ids that are not sorted and unique, or a number of rows
            or columns that disagrees with the ids or the shape; the message names the file.
        """
        path = os.fspath(path)
        with h5py.File(path, "r") as h5:
            require_contents(h5, path, "decoded-latent file", ("predictions", "nsd_ids"), ("shape",))
            data, ids = h5["predictions"], h5["nsd_ids"][()]
            shape = tuple(int(n) for n in np.atleast_1d(h5.attrs["shape"]))
            check_image_rows(path, "predictions", data.shape, ids, shape)
            values = data[()] if predictions else None
        return cls(path, values, ids, shape)


def write_decoded_latent(path, predictions: np.ndarray, nsd_ids: np.ndarray, shape,
                         datasets: Mapping[str, np.ndarray] | None = None, attrs: Mapping | None = None) -> None:
    """Write a decoded-latent file atomically (see the module's layout).

    Parameters
    ----------
    path : path
    predictions : numpy.ndarray
        ``(n_test, d)`` or ``(n_test, *shape)``, floating point (the decoders' float32); stored flat.
    nsd_ids : numpy.ndarray
        One sorted, unique id per row.
    shape : sequence of int
        One image's latent.
    datasets, attrs : mapping, optional
        Further datasets (written after ``predictions`` and ``nsd_ids``, in order) and attributes.

    Raises
    ------
    ValueError
        Rows, values per image or ids that do not fit (nothing is written).
    """
    shape = tuple(int(n) for n in shape)
    nsd_ids = np.asarray(nsd_ids)
    flat = np.asarray(predictions)
    flat = flat.reshape(len(flat), -1)
    if flat.shape != (len(nsd_ids), int(np.prod(shape))):
        raise ValueError(f"{path}: predictions of shape {np.shape(predictions)} do not fit {len(nsd_ids)} ids "
                         f"of latents {shape}")
    if np.any(np.diff(nsd_ids) <= 0) or not np.issubdtype(flat.dtype, np.floating):
        raise ValueError(f"{path}: expected floating-point predictions and sorted, unique nsd_ids")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as out:
        out.create_dataset("predictions", data=flat, track_times=False)
        out.create_dataset("nsd_ids", data=nsd_ids, track_times=False)
        for name, values in (datasets or {}).items():
            out.create_dataset(name, data=values, track_times=False)
        out.attrs.update({"shape": shape, **dict(attrs or {})})
