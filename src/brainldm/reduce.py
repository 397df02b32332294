"""PCA of a feature, fitted on one subject's training images only.

Exact PCA through the smaller of the two Gram matrices: ``X Xᵀ`` (n x n) when
there are fewer training images than dimensions (c has 59,136 dimensions on
SD 1.4, for ~9,000 training images), ``Xᵀ X`` (d x d) otherwise. Both are
accumulated over blocks in float64, so no float64 copy of the feature matrix
is ever made; memory is the float32 features plus one Gram matrix.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

import h5py
import numpy as np
import pandas as pd

from .io import atomic_path, rows_of_ids

log = logging.getLogger(__name__)

#: Rows (or columns) of the feature matrix per block of the Gram accumulation.
BLOCK = 4096


@dataclass
class PCA:
    """A fitted PCA: ``transform(x) = (x - mean) @ components.T``."""

    mean: np.ndarray  # (d,)
    components: np.ndarray  # (k, d), orthonormal rows
    explained_variance: np.ndarray  # (k,)
    total_variance: float

    def transform(self, x: np.ndarray) -> np.ndarray:
        out = np.empty((len(x), len(self.components)), dtype=np.float32)
        for start in range(0, len(x), BLOCK):
            out[start:start + BLOCK] = (x[start:start + BLOCK] - self.mean) @ self.components.T
        return out


def fit_pca(x: np.ndarray, n_components: int) -> PCA:
    """Fit an exact PCA with at most ``n_components`` components.

    Parameters
    ----------
    x : numpy.ndarray
        ``(n_samples, n_features)`` float32; not modified.
    n_components : int
        Upper bound; the result keeps ``min(n_components, n_samples - 1, n_features)``
        components (the centred data has rank at most ``n_samples - 1``).

    Returns
    -------
    PCA
    """
    n, d = x.shape
    if n < 2:
        raise ValueError(f"PCA needs at least 2 training samples, found {n}")
    k = int(min(n_components, n - 1, d))
    mean = x.mean(axis=0, dtype=np.float64).astype(np.float32)
    if n <= d:
        gram = np.zeros((n, n))
        for start in range(0, d, BLOCK):
            block = (x[:, start:start + BLOCK] - mean[start:start + BLOCK]).astype(np.float64)
            gram += block @ block.T
        total = float(np.trace(gram))
        values, vectors = np.linalg.eigh(gram)
        order = np.argsort(values)[::-1][:k]
        values, vectors = np.clip(values[order], 0, None), vectors[:, order]
        components = np.empty((k, d), dtype=np.float32)
        scale = 1 / np.sqrt(np.where(values > 0, values, np.inf))
        for start in range(0, d, BLOCK):
            block = (x[:, start:start + BLOCK] - mean[start:start + BLOCK]).astype(np.float64)
            components[:, start:start + BLOCK] = (vectors * scale).T @ block
    else:
        cov = np.zeros((d, d))
        for start in range(0, n, BLOCK):
            block = (x[start:start + BLOCK] - mean).astype(np.float64)
            cov += block.T @ block
        total = float(np.trace(cov))
        values, vectors = np.linalg.eigh(cov)
        order = np.argsort(values)[::-1][:k]
        values, components = np.clip(values[order], 0, None), vectors[:, order].T.astype(np.float32)
    # a deterministic sign: the largest-magnitude loading of each component is positive
    signs = np.sign(components[np.arange(k), np.abs(components).argmax(axis=1)])
    components *= np.where(signs == 0, 1, signs)[:, None]
    return PCA(mean=mean, components=components, explained_variance=values / (n - 1), total_variance=total / (n - 1))


def reduce_feature(feature_path, trials_path, out_path, n_components: int) -> None:
    """PCA of one feature for one subject: fit on its training images, apply to train and test.

    Parameters
    ----------
    feature_path : path
        HDF5 with ``features`` (n_images, d) and sorted ``nsd_ids``.
    trials_path : path
        The subject's ``trials.tsv`` (``nsd_id``, ``split``).
    out_path : path
        Output HDF5: ``train`` and ``test`` (one row per unique image, sorted by
        id), ``train_nsd_ids``, ``test_nsd_ids``, ``explained_variance_ratio``.
    n_components : int
        Upper bound of the number of components (paper: 6,400).
    """
    trials = pd.read_csv(trials_path, sep="\t")
    train_ids = np.unique(trials.loc[trials["split"] == "train", "nsd_id"])
    test_ids = np.unique(trials.loc[trials["split"] == "test", "nsd_id"])
    if np.intersect1d(train_ids, test_ids).size:
        raise ValueError(f"{trials_path}: images in both train and test splits")
    with h5py.File(feature_path, "r") as h5:
        feature_ids = h5["nsd_ids"][:]
        data = h5["features"]
        train = data[np.sort(rows_of_ids(feature_ids, train_ids, feature_path))]
        test = data[np.sort(rows_of_ids(feature_ids, test_ids, feature_path))]
        attrs = dict(h5.attrs)
    pca = fit_pca(train, n_components)
    ratio = pca.explained_variance / pca.total_variance if pca.total_variance > 0 else pca.explained_variance * 0
    with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as out:
        out.create_dataset("train", data=pca.transform(train), track_times=False)
        out.create_dataset("test", data=pca.transform(test), track_times=False)
        out.create_dataset("train_nsd_ids", data=train_ids, track_times=False)
        out.create_dataset("test_nsd_ids", data=test_ids, track_times=False)
        out.create_dataset("mean", data=pca.mean, track_times=False)
        out.create_dataset("explained_variance_ratio", data=ratio, track_times=False)
        out.attrs["n_components"] = len(pca.components)
        out.attrs["fitted_on"] = "the subject's training images only (one row per unique image)"
        out.attrs["source"] = os.fspath(feature_path)
        out.attrs["source_attrs"] = json.dumps({k: str(v) for k, v in attrs.items()}, sort_keys=True)
    log.info("%s: PCA %d -> %d components on %d training images (%.1f%% variance), %d test images",
             feature_path, train.shape[1], len(pca.components), len(train), 100 * ratio.sum(), len(test))


def reduce_features(feature_paths: dict, trials_path, out_paths: dict, n_components: int) -> None:
    """:func:`reduce_feature` for every feature of one subject (``feature name -> path`` mappings)."""
    for name, path in feature_paths.items():
        reduce_feature(path, trials_path, out_paths[name], n_components)
