"""The PCA feature file (``results/{subject}/features_pca/{feature}.h5``): its one writer and its one reader.

Written by :func:`brainldm.pca.reduce_feature`, read by the encoding models, the tests and the
benchmarks, always through :func:`write_reduced_feature` and :class:`ReducedFeature`, so that
names and shapes are checked in one place. A module of its own, without pandas or scipy, because
every encoding job reads one.

Layout:

* ``train`` ``(n_train_images, k)`` float32: the PCA scores of the subject's training images, one
  row per unique image; ``train_nsd_ids``: their 0-based 73k ids, sorted and unique;
* ``test`` ``(n_test_images, k)`` and ``test_nsd_ids``: the same for the test images;
* any further datasets and attributes the writer is given (``mean``, ``explained_variance_ratio``,
  ``n_components``, the source's provenance).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import h5py
import numpy as np

from .errors import IntermediateFileError
from .files import atomic_path, require_contents

__all__ = ["ReducedFeature", "write_reduced_feature"]

_DATASETS = ("train", "train_nsd_ids", "test", "test_nsd_ids")


def _check(train, train_ids, test, test_ids) -> str | None:
    """What is wrong with these arrays as a PCA feature file, or None."""
    for label, scores, ids in (("train", train, train_ids), ("test", test, test_ids)):
        if scores.ndim != 2 or ids.ndim != 1 or len(scores) != len(ids):
            return f"{label} of shape {scores.shape} for {len(ids)} {label}_nsd_ids (expected one row per image)"
        if np.any(np.diff(ids) <= 0):
            return f"{label}_nsd_ids must be sorted and unique"
    if train.shape[1] != test.shape[1] or train.shape[1] == 0:
        return f"train has {train.shape[1]} columns, test {test.shape[1]} (expected the same number, at least 1)"
    return None


@dataclass(frozen=True)
class ReducedFeature:
    """One PCA feature file's scores and ids, checked once (see the module's layout)."""

    path: str
    train: np.ndarray
    train_ids: np.ndarray
    test: np.ndarray
    test_ids: np.ndarray

    @classmethod
    def read(cls, path) -> ReducedFeature:
        """Open ``path``, check it and load its scores (float32).

        Raises
        ------
        IntermediateFileError
            A missing dataset, ids that are not sorted and unique, rows that disagree with the
            ids, or train and test of different widths; the message names the file.
        """
        path = os.fspath(path)
        with h5py.File(path, "r") as h5:
            require_contents(h5, path, "PCA feature file", _DATASETS)
            train, test = (np.asarray(h5[name][()], dtype=np.float32) for name in ("train", "test"))
            train_ids, test_ids = h5["train_nsd_ids"][()], h5["test_nsd_ids"][()]
        problem = _check(train, train_ids, test, test_ids)
        if problem:
            raise IntermediateFileError(f"{path}: {problem}")
        return cls(path, train, train_ids, test, test_ids)


def write_reduced_feature(path, train: np.ndarray, train_ids, test: np.ndarray, test_ids,
                          datasets: Mapping[str, np.ndarray] | None = None, attrs: Mapping | None = None) -> None:
    """Write a PCA feature file atomically (see the module's layout).

    ``train`` and ``test`` are stored as given (the PCA writes float32); ``datasets`` (in order)
    and ``attrs`` are added.

    Raises
    ------
    ValueError
        Arrays that do not fit together (nothing is written).
    """
    train, test, train_ids, test_ids = (np.asarray(a) for a in (train, test, train_ids, test_ids))
    problem = _check(train, train_ids, test, test_ids)
    if problem:
        raise ValueError(f"{path}: {problem}")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as out:
        out.create_dataset("train", data=train, track_times=False)
        out.create_dataset("test", data=test, track_times=False)
        out.create_dataset("train_nsd_ids", data=train_ids, track_times=False)
        out.create_dataset("test_nsd_ids", data=test_ids, track_times=False)
        for name, values in (datasets or {}).items():
            out.create_dataset(name, data=values, track_times=False)
        out.attrs.update(dict(attrs or {}))
