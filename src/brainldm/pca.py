"""PCA of a feature, fitted on one subject's training images only, streamed from its HDF5 file.

Exact PCA through the smaller of the two Gram matrices, accumulated in float64
over blocks read straight from the feature file (the feature matrix is never
in memory, nor are the components):

* ``n <= d`` (fewer training images than dimensions: every Stable Diffusion
  feature of the paper, e.g. a U-Net block's 1,024,000 dimensions for ~9,000
  training images): one pass over column blocks accumulates the centred
  training Gram ``Xc Xcᵀ`` (n x n) and the cross Gram ``(X_test - mean) Xcᵀ``
  (n_test x n). With ``Xc Xcᵀ = U Λ Uᵀ``, the train scores are
  ``U_k Λ_k^½`` and the test scores ``cross U_k Λ_k^-½``: the components
  ``Xcᵀ U_k Λ_k^-½`` (k x d, 26 GB at the paper's size) are never formed.
* ``d < n``: the covariance ``Xcᵀ Xc`` (d x d) over row blocks of the training
  images (means and scatters merged block by block, Chan et al.'s update), then a
  second pass over row blocks projects train and test rows on its eigenvectors.

Memory is one Gram matrix, the cross Gram, the eigendecomposition's workspace
and one block (:data:`BLOCK_BYTES` of float32, or one chunk column of the needed
rows if that is more, plus its float64 centred copy). Reads follow the file's
chunks: a column block is a whole number of chunks wide, and each chunk is read
once per pass (HDF5 reads whole chunks, so a block narrower than a chunk would
read each chunk again for every block it overlaps).

Sign of each component: its largest-magnitude training score is positive (see
:func:`pca_scores`); the downstream ridge models do not depend on it.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

import h5py
import numpy as np
import pandas as pd
import scipy.linalg
from scipy.linalg.blas import dsyr, dsyrk

from .feature_file import FeatureFile
from .files import rows_of_ids
from .reduced import write_reduced_feature

log = logging.getLogger(__name__)

#: Bytes of float32 features per block (the needed rows of a column block, or a row block).
BLOCK_BYTES = 256 << 20


@dataclass
class PCAScores:
    """Scores of a PCA fitted on training rows, for the training and the test rows.

    ``train`` and ``test`` are ``(x - mean) @ components.T`` (float32) for the
    components that :func:`pca_scores` never forms.
    """

    train: np.ndarray  # (n_train, k) float32
    test: np.ndarray  # (n_test, k) float32
    mean: np.ndarray  # (d,) float32, of the training rows
    explained_variance: np.ndarray  # (k,) float64
    total_variance: float


def pca_scores(data, train_rows, test_rows, n_components: int, block_bytes: int = BLOCK_BYTES) -> PCAScores:
    """Exact PCA fitted on ``data[train_rows]``; scores of the training and test rows.

    Parameters
    ----------
    data : h5py.Dataset or numpy.ndarray
        ``(n_rows, d)`` float32 features, read in blocks (``data[a:b, c:e]``, or
        ``read_direct`` for an HDF5 dataset); never loaded whole.
    train_rows, test_rows : array of int
        Sorted, unique, disjoint rows of ``data``; the PCA sees the training rows only.
    n_components : int
        Upper bound; the result keeps ``k = min(n_components, n_train - 1, d)``
        components (the centred data has rank at most ``n_train - 1``).
    block_bytes : int
        Float32 bytes per block of the needed rows (a column block is still at
        least one chunk of ``data`` wide).

    Returns
    -------
    PCAScores
        Components in decreasing order of variance. Sign: each component's
        largest-magnitude training score is positive (the first such row when
        several tie; sklearn's ``svd_flip(u_based_decision=True)``), so the
        result is deterministic without the components. Components whose
        eigenvalue is below the eigensolver's resolution (``size * eps *``
        the largest) have zero scores.

    Raises
    ------
    ValueError
        Fewer than 2 training rows.
    """
    train_rows = np.asarray(train_rows, dtype=np.int64)
    test_rows = np.asarray(test_rows, dtype=np.int64)
    n, d = len(train_rows), data.shape[1]
    if n < 2:
        raise ValueError(f"PCA needs at least 2 training samples, found {n}")
    k = int(min(n_components, n - 1, d))
    fit = _gram_scores if n <= d else _covariance_scores
    return fit(data, train_rows, test_rows, k, block_bytes)


def _gram_scores(data, train_rows, test_rows, k, block_bytes) -> PCAScores:
    n, m = len(train_rows), len(test_rows)
    gram = np.zeros((n, n), order="F")  # upper triangle only (dsyrk), Fortran order: updated in place
    cross = np.zeros((m, n))
    mean = np.empty(data.shape[1], np.float32)
    for c0, c1, block in _column_blocks(data, *_union(train_rows, test_rows), block_bytes):
        mu = block[:n].mean(axis=0, dtype=np.float64)  # block: the training rows, then the test rows
        mean[c0:c1] = mu
        centred = np.subtract(block[:n], mu, dtype=np.float64)
        gram = dsyrk(1.0, centred.T, beta=1.0, c=gram, trans=1, overwrite_c=1)  # += centred centredᵀ
        if m:
            cross += np.subtract(block[n:], mu, dtype=np.float64) @ centred.T
        del centred
    del block  # the read buffer, before the eigendecomposition's workspace
    total = float(np.trace(gram))
    values, vectors = _top_eigen(gram, k)
    del gram
    kept = _resolved(values, n)
    # train scores U sqrt(λ), test scores cross U / sqrt(λ); a train score has the sign of U's entry
    vectors *= _signs(vectors)
    root = np.sqrt(np.where(kept, values, 1))
    train = (vectors * np.where(kept, root, 0)).astype(np.float32)
    test = (cross @ vectors * np.where(kept, 1 / root, 0)).astype(np.float32)
    return PCAScores(train, test, mean, values / (n - 1), total / (n - 1))


def _covariance_scores(data, train_rows, test_rows, k, block_bytes) -> PCAScores:
    n, d = len(train_rows), data.shape[1]
    count, mean = 0, np.zeros(d)
    scatter = np.zeros((d, d), order="F")  # upper triangle only
    for _, block in _row_blocks(data, train_rows, np.arange(n), block_bytes):
        rows = len(block)
        block_mean = block.mean(axis=0, dtype=np.float64)
        centred = np.subtract(block, block_mean, dtype=np.float64)
        scatter = dsyrk(1.0, centred.T, beta=1.0, c=scatter, trans=0, overwrite_c=1)  # += centredᵀ centred
        # merge the block's mean and scatter into the running ones (Chan et al.): no cancellation
        delta = block_mean - mean
        scatter = dsyr(count * rows / (count + rows), delta, a=scatter, overwrite_a=1)
        mean += delta * rows / (count + rows)
        count += rows
        del centred
    del block
    total = float(np.trace(scatter))
    values, vectors = _top_eigen(scatter, k)
    del scatter
    vectors[:, ~_resolved(values, d)] = 0
    scores = np.empty((n + len(test_rows), k), np.float32)  # the training rows, then the test rows
    for slots, block in _row_blocks(data, *_union(train_rows, test_rows), block_bytes):
        scores[slots] = np.subtract(block, mean, dtype=np.float64) @ vectors
    scores *= _signs(scores[:n])
    return PCAScores(scores[:n], scores[n:], mean.astype(np.float32), values / (n - 1), total / (n - 1))


def _union(train_rows, test_rows) -> tuple[np.ndarray, np.ndarray]:
    """The rows of both sets in file order, and each one's slot (training rows first, then test rows).

    One pass over the file for both sets: a span of file rows holds rows of both.
    """
    rows = np.concatenate([train_rows, test_rows])
    slots = np.argsort(rows, kind="stable")
    return rows[slots], slots


def _top_eigen(upper: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest eigenvalues (clipped at 0, decreasing) and eigenvectors of a symmetric
    matrix given by its upper triangle (overwritten)."""
    values, vectors = scipy.linalg.eigh(upper, lower=False, overwrite_a=True, check_finite=False, driver="evd")
    return np.clip(values[::-1][:k], 0, None), vectors[:, ::-1][:, :k].copy()


def _resolved(values: np.ndarray, size: int) -> np.ndarray:
    """Eigenvalues the solver resolves from 0 (its error is about ``size * eps * largest``)."""
    top = values[0] if len(values) else 0.0
    return values > top * size * np.finfo(np.float64).eps


def _signs(scores: np.ndarray) -> np.ndarray:
    """+-1 per column making each column's largest-magnitude entry positive (+1 for a zero column)."""
    signs = np.sign(scores[np.abs(scores).argmax(axis=0), np.arange(scores.shape[1])])
    return np.where(signs == 0, 1, signs).astype(scores.dtype)


# ----------------------------------------------------------------------------- block reads


def _chunks(data) -> tuple[int, int]:
    """Rows and columns of the storage chunks of ``data`` (1 x 1 when it has none)."""
    return tuple(getattr(data, "chunks", None) or (1, 1))


def _column_blocks(data, rows, slots, block_bytes):
    """Yield ``(c0, c1, block)`` with ``block[slots] = data[rows, c0:c1]`` (``rows`` sorted).

    The same buffer is filled for every block (one block in memory at a time);
    its width is a whole number of chunks where ``data`` is chunked.
    """
    d = data.shape[1]
    chunk_rows, chunk_cols = _chunks(data)
    width = max(1, block_bytes // (4 * max(len(rows), 1)))
    width = min(d, max(chunk_cols, width - width % chunk_cols))
    buffer = np.empty((len(rows), width), np.float32)
    pieces = _piece_rows(chunk_rows, width, block_bytes)
    for c0 in range(0, d, width):
        c1 = min(d, c0 + width)
        _read_rows(data, rows, slots, c0, c1, buffer, pieces)
        yield c0, c1, buffer[:, :c1 - c0]


def _row_blocks(data, rows, slots, block_bytes):
    """Yield ``(slots[part], data[rows[part]])`` over consecutive parts of the budget's height."""
    d = data.shape[1]
    height = max(1, block_bytes // (4 * d))
    buffer = np.empty((min(height, len(rows)), d), np.float32)
    pieces = _piece_rows(_chunks(data)[0], d, block_bytes)
    for start in range(0, len(rows), height):
        part = rows[start:start + height]
        _read_rows(data, part, np.arange(len(part)), 0, d, buffer, pieces)
        yield slots[start:start + height], buffer[:len(part)]


def _piece_rows(chunk_rows: int, width: int, block_bytes: int) -> int:
    """File rows per read: whole chunks, the temporary of a sparse read within 1/8 of the budget."""
    rows = max(1, block_bytes // (8 * 4 * width))
    return max(chunk_rows, rows - rows % chunk_rows)


def _read_rows(data, rows, slots, c0, c1, buffer, piece_rows) -> None:
    """``buffer[slots, :c1 - c0] = data[rows, c0:c1]`` for sorted ``rows``.

    Reads one contiguous span of file rows per group of ``piece_rows``
    (chunk-aligned: each chunk is read once) and picks the wanted rows in memory
    (h5py's fancy indexing is slow).
    """
    if not len(rows):
        return
    cuts = np.flatnonzero(np.diff(rows // piece_rows)) + 1
    for i, j in zip(np.r_[0, cuts], np.r_[cuts, len(rows)]):
        lo, hi = int(rows[i]), int(rows[j - 1]) + 1
        first = int(slots[i])
        if hi - lo == j - i and np.array_equal(slots[i:j], np.arange(first, first + j - i)):
            target = np.s_[first:first + j - i, :c1 - c0]  # every row wanted, in order: no temporary
            if isinstance(data, h5py.Dataset):
                data.read_direct(buffer, np.s_[lo:hi, c0:c1], target)
            else:
                buffer[target] = data[lo:hi, c0:c1]
        else:
            buffer[slots[i:j], :c1 - c0] = np.asarray(data[lo:hi, c0:c1])[rows[i:j] - lo]


# ----------------------------------------------------------------------------- files


def reduce_feature(feature_path, trials_path, out_path, n_components: int,
                   block_bytes: int = BLOCK_BYTES) -> None:
    """PCA of one feature for one subject: fit on its training images, apply to train and test.

    Streamed from the feature file (see :func:`pca_scores`, which also gives
    the sign rule): memory is about one Gram matrix of the training images
    (n² float64; 630 MB for 8,859 images), its eigendecomposition's workspace
    and one block, whatever the feature's dimension.

    Parameters
    ----------
    feature_path : path
        A feature file (:mod:`brainldm.feature_file`).
    trials_path : path
        The subject's ``trials.tsv`` (``nsd_id``, ``split``).
    out_path : path
        Output, a :mod:`brainldm.reduced` file: ``train`` and ``test`` (one row per
        unique image, sorted by id), ``train_nsd_ids``, ``test_nsd_ids``, and ``mean``
        (of the training images), ``explained_variance_ratio``.
    n_components : int
        Upper bound of the number of components (paper: 6,400).
    block_bytes : int
        Float32 bytes per block read from the feature file.
    """
    trials = pd.read_csv(trials_path, sep="\t")
    train_ids = np.unique(trials.loc[trials["split"] == "train", "nsd_id"])
    test_ids = np.unique(trials.loc[trials["split"] == "test", "nsd_id"])
    if np.intersect1d(train_ids, test_ids).size:
        raise ValueError(f"{trials_path}: images in both train and test splits")
    feature = FeatureFile.read(feature_path)
    train_rows = np.sort(rows_of_ids(feature.nsd_ids, train_ids, feature_path))
    test_rows = np.sort(rows_of_ids(feature.nsd_ids, test_ids, feature_path))
    dim, attrs = feature.n_values, feature.attrs
    with feature.features() as data:
        pca = pca_scores(data, train_rows, test_rows, n_components, block_bytes)
    kept = pca.train.shape[1]
    ratio = pca.explained_variance / pca.total_variance if pca.total_variance > 0 else pca.explained_variance * 0
    write_reduced_feature(
        out_path, pca.train, train_ids, pca.test, test_ids,
        datasets={"mean": pca.mean, "explained_variance_ratio": ratio},
        attrs={"n_components": kept, "fitted_on": "the subject's training images only (one row per unique image)",
               "source": os.fspath(feature_path),
               "source_attrs": json.dumps({k: str(v) for k, v in attrs.items()}, sort_keys=True)},
    )
    log.info("%s: PCA %d -> %d components on %d training images (%.1f%% variance), %d test images",
             feature_path, dim, kept, len(train_rows), 100 * ratio.sum(), len(test_rows))


def reduce_features(feature_paths: dict, trials_path, out_paths: dict, n_components: int) -> None:
    """:func:`reduce_feature` for every feature of one subject (``feature name -> path`` mappings)."""
    for name, path in feature_paths.items():
        reduce_feature(path, trials_path, out_paths[name], n_components)
