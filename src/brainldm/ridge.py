"""Ridge regression with an alpha per target chosen by cross-validation (himalaya's RidgeCV results).

Shared by decoding (voxels -> latent dimensions) and encoding (features -> voxels).
:class:`RidgeCVEngine` reproduces himalaya's ``RidgeCV`` (K-fold CV, an alpha per target,
intercept) but diagonalises each fold once, then fits any number of target batches
against those decompositions, returning each batch's test predictions;
:func:`fit_predict` (decoding) is a thin wrapper that gathers them. Both run on a
himalaya backend: ``auto`` means ``torch_cuda`` when CUDA is present, ``numpy`` otherwise.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import numpy as np

from .device import array_backend, himalaya_backend

log = logging.getLogger(__name__)


def check_finite(name: str, array: np.ndarray) -> None:
    """Raise a ValueError naming ``name`` if ``array`` holds NaN or infinite values."""
    bad = ~np.isfinite(array)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        raise ValueError(f"{name}: {int(bad.sum())} NaN or infinite values (rows {rows[:10].tolist()})")


@dataclass
class Standardizer:
    """Per-column z-scoring with statistics of the training rows only."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> "Standardizer":
        mean = x.mean(axis=0, dtype=np.float64)
        sd = x.std(axis=0, dtype=np.float64)
        return cls(mean.astype(np.float32), np.where(sd > 0, sd, 1.0).astype(np.float32))

    @classmethod
    def fit_common_scale(cls, x: np.ndarray) -> "Standardizer":
        """Centre every column, divide all of them by one scale: the root mean column variance.

        The columns keep their relative variances, so ridge still shrinks the small
        components of a PCA most; z-scoring each component would whiten them and give
        the noisiest ones the weight of the largest. The mean column variance is 1, so
        an alpha grid means the same as with per-column z-scoring.
        """
        mean = x.mean(axis=0, dtype=np.float64)
        common = float(np.sqrt(x.var(axis=0, dtype=np.float64).mean()))
        scale = np.full(x.shape[1], common if common > 0 else 1.0)
        return cls(mean.astype(np.float32), scale.astype(np.float32))

    def transform(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale).astype(np.float32)


class RowsOf:
    """Rows ``rows`` of a 2-D array or HDF5 dataset, read lazily one column block at a time."""

    def __init__(self, data, rows: np.ndarray):
        self.data, self.rows = data, np.asarray(rows)
        self.shape = (len(self.rows), data.shape[1])

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        rows, cols = key
        if rows != slice(None):
            raise IndexError("RowsOf supports [:, columns] only")
        return np.asarray(self.data[:, cols])[self.rows]


@dataclass
class RidgeFit:
    """Predictions and per-target hyperparameters of a cross-validated ridge."""

    predictions: np.ndarray  # (n_test, n_targets)
    best_alphas: np.ndarray  # (n_targets,)
    cv_scores: np.ndarray  # (n_targets,) best cross-validated score (negative MSE, mean over folds)
    alpha_at_edge: np.ndarray  # (n_targets,) bool: chosen alpha is the smallest or largest of the grid


def fold_bounds(n_rows: int, cv: int) -> list[tuple[int, int]]:
    """Validation rows ``[start, stop)`` of each fold of scikit-learn's unshuffled ``KFold(cv)``."""
    edges = np.cumsum([0] + [len(part) for part in np.array_split(np.arange(n_rows), cv)])
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


@contextlib.contextmanager
def _one_cpu_thread(backend):
    """Run the block on one CPU thread of ``backend``'s LAPACK (torch's threads, or BLAS via threadpoolctl)."""
    if backend.name == "torch":  # CPU tensors
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - installed with scikit-learn, himalaya's dependency
        yield
        return
    with threadpool_limits(1, user_api="blas"):
        yield


def _eigh(backend, gram):
    """Eigenvalues (clipped at 0) and eigenvectors of the symmetric ``gram``, which may be overwritten.

    On a CPU, on one thread: the tridiagonal reduction inside LAPACK's symmetric
    eigensolvers is matrix-vector work that a second thread barely speeds up and that
    collapses when the cores are shared (2,000 x 2,000, float64, two cores under load:
    14 s on two OpenBLAS threads, 2.4 s on one). On the numpy backend: ``syevr`` in
    place (small workspace).
    """
    if backend.name == "numpy":
        import scipy.linalg

        with _one_cpu_thread(backend):  # gram.T: the same symmetric matrix, Fortran-ordered: LAPACK works in it
            values, vectors = scipy.linalg.eigh(gram.T, overwrite_a=True, check_finite=False, driver="evr")
    elif backend.name == "torch":
        with _one_cpu_thread(backend):
            values, vectors = backend.eigh(gram)
    else:
        values, vectors = backend.eigh(gram)
    return values * (values > 0), vectors


@dataclass
class _Eig:
    """Ridge of one set of training rows, diagonalised: ``(X'X + a I)^-1 = V diag(1 / (lam + a)) V'``.

    X is centred with the training rows' mean ``mean``; ``rows`` are the rows to predict
    (a fold's validation rows, or the test rows), centred the same way and rotated by V.
    """

    lam: object  # (p,) float64 eigenvalues of the centred training rows' Gram matrix
    vectors: object  # (p, p) float32 V
    mean: object  # (p,) float32 mean of the training rows
    v_mean: object  # (p,) float32 V' mean
    rows: object  # (n_rows, p) float32 (rows - mean) V


def _blockwise_products(backend, bounds, rows, left=None):
    """``sum_k left_k' rows_k`` over the folds' blocks of rows, and each ``rows_k``'s column sums.

    ``rows(lo, hi)`` (and ``left(lo, hi)``, ``rows`` itself when None) give a block; one
    block is held at a time.
    """
    total, sums = None, []
    for lo, hi in bounds:
        block = rows(lo, hi)
        part = backend.matmul((block if left is None else left(lo, hi)).T, block)
        sums.append(block.sum(0))
        del block
        if total is None:
            total = part
        else:
            total += part
        del part
    return total, sums


def _diagonalise(backend, x, x_test, bounds) -> tuple[list[_Eig], _Eig]:
    """Eigendecompositions of every fold's training rows and of all rows, computed once.

    A fold's Gram matrix is the total one minus the fold's block and a rank-one mean
    correction, accumulated in float64 one block of rows at a time: no copy of X per
    fold, and no U (rows x voxels) as an SVD would need.
    """
    f32, f64 = "float32", "float64"
    n = x.shape[0]
    gram, sums = _blockwise_products(backend, bounds, lambda lo, hi: backend.asarray(x[lo:hi], dtype=f64))
    total = sum(sums)

    def diagonalised(g, mean, rows) -> _Eig:
        lam, vectors = _eigh(backend, g)
        vectors = backend.asarray(vectors, dtype=f32)
        mean = backend.asarray(mean, dtype=f32)
        return _Eig(lam, vectors, mean, backend.matmul(vectors.T, mean), backend.matmul(rows - mean, vectors))

    folds = []
    for (lo, hi), fold_sum in zip(bounds, sums):
        block = backend.asarray(x[lo:hi], dtype=f64)
        n_train = n - (hi - lo)
        mean = (total - fold_sum) / n_train
        g = backend.matmul(block.T, block)
        del block
        g -= gram
        g *= -1  # the training rows' Gram matrix
        g -= (n_train * mean)[:, None] * mean[None, :]
        folds.append(diagonalised(g, mean, x[lo:hi]))
        del g
    mean = total / n
    gram -= (n * mean)[:, None] * mean[None, :]
    return folds, diagonalised(gram, mean, x_test)


def _fit_batch(backend, x, y, y_mean, folds: list[_Eig], full: _Eig, bounds, alphas: np.ndarray):
    """CV scores of every alpha for a batch of targets, the best alpha per target, and test predictions.

    ``y``: the batch's targets as read (not copied on the numpy backend); ``y_mean``:
    their training means, subtracted one fold's rows at a time. Returns the test
    predictions without ``y_mean``, the chosen alphas, their CV scores and the refit's
    coefficients in the eigenbasis of all training rows (``V' W``).
    """
    f32 = "float32"
    n = x.shape[0]
    y = backend.asarray(y)
    y_mean = backend.asarray(y_mean, dtype=f32)
    # X'Y of all rows (both centred), the column sums of each fold's rows
    xy, y_sums = _blockwise_products(backend, bounds, lambda lo, hi: y[lo:hi] - y_mean, lambda lo, hi: x[lo:hi])
    y_total = sum(y_sums)
    scores = np.empty((len(bounds), len(alphas), y.shape[1]))
    for k, ((lo, hi), fold, y_sum) in enumerate(zip(bounds, folds, y_sums)):
        n_train = n - (hi - lo)
        train_mean = (y_total - y_sum) / n_train  # of the fold's training rows
        yc = y[lo:hi] - y_mean
        d = backend.matmul(x[lo:hi].T, yc)
        d -= xy
        d *= -1  # X'Y of the training rows
        z = backend.matmul(fold.vectors.T, d)  # the mean correction is applied to the residuals below
        del d
        for j, alpha in enumerate(alphas):
            shrink = backend.asarray(1.0 / (fold.lam + alpha), dtype=f32)
            # residual = (rows - mean) W - (Y rows - train mean), with
            # W = V diag(shrink) V' (X'Y of the training rows - n_train mean train_mean')
            mean_effect = 1.0 - n_train * backend.matmul(fold.rows, shrink * fold.v_mean)
            residual = backend.matmul(fold.rows * shrink, z)
            residual -= yc
            residual += mean_effect[:, None] * train_mean[None, :]
            residual *= residual
            # himalaya's default score, l2_neg_loss: minus the fold's mean squared error
            scores[k, j] = -backend.to_numpy(residual.sum(0)) / (hi - lo)
            del residual
        del z, yc
    # himalaya's selection: mean over folds, ties to the larger alpha
    mean_scores = scores.mean(0) + 1e-10 * np.log(alphas)[:, None]
    best = np.argmax(mean_scores, axis=0)
    cv_scores = mean_scores[best, np.arange(len(best))]
    # refit on all rows (X and Y are centred on them) with each target's alpha
    z = backend.matmul(full.vectors.T, xy)
    del xy
    z /= backend.asarray(full.lam, dtype=f32)[:, None] + backend.asarray(alphas[best], dtype=f32)[None, :]
    predictions = backend.to_numpy(backend.matmul(full.rows, z))
    return predictions, alphas[best], cv_scores, z


def _check_alphas(alphas) -> np.ndarray:
    """The grid as a float64 vector; a ValueError if it is empty or holds a non-positive or non-finite value."""
    alphas = np.asarray(alphas, dtype=np.float64).reshape(-1)
    if alphas.size == 0:
        raise ValueError("the alpha grid is empty")
    if not np.all(np.isfinite(alphas)) or np.any(alphas <= 0):
        bad = alphas[~(alphas > 0) | ~np.isfinite(alphas)]
        raise ValueError(f"alphas must be positive and finite, found {bad.tolist()}")
    return alphas


@dataclass
class BatchFit:
    """Test predictions and per-target hyperparameters of one batch of targets (:meth:`RidgeCVEngine.fit`)."""

    predictions: np.ndarray  # (n_test, batch) float32, intercept included
    best_alphas: np.ndarray  # (batch,) float64, values of the grid
    cv_scores: np.ndarray  # (batch,) best cross-validated score (negative MSE, mean over folds)
    split: np.ndarray | None = None  # (n_groups, n_test, batch) float32: each column group's part, no intercept


class RidgeCVEngine:
    """X's cross-validation folds diagonalised once, then fitted to any number of target batches.

    Construction prepares X (optionally z-scored with the training rows' statistics,
    always centred on them), and eigendecomposes the Gram matrix of every fold's
    training rows and of all training rows (``cv + 1`` decompositions, float64, from
    block Gram matrices: no copy of X per fold). Each :meth:`fit` then solves one batch
    of targets against those decompositions with matrix products only, and returns
    that batch's test predictions, best alphas and CV scores; nothing grows with the
    number of batches, so a caller can consume and drop each batch's predictions
    (encoding: 2,770 test rows x 300,000 voxels would not fit as one array).

    The results of every batch are those of himalaya's ``RidgeCV(alphas, cv=cv,
    fit_intercept=True, solver_params={"local_alpha": True})`` fitted on the prepared X
    and that batch alone (unshuffled KFold, an intercept, CV score himalaya's default:
    minus the mean squared error of each validation fold, averaged over folds; ties go
    to the larger alpha). ``tests/test_ridge.py`` and ``tests/test_encoding.py`` compare
    them.

    Memory beyond the inputs: the prepared training X, ``cv + 1`` float32 matrices of
    features x features and the rotated validation and test rows (independent of the
    number of targets), float64 features x features work arrays while diagonalising,
    and per batch a few float32 arrays of features x batch and validation rows x batch.

    Parameters
    ----------
    x_train, x_test : numpy.ndarray
        ``(n_train, n_features)``, ``(n_test, n_features)``; not modified (unless ``overwrite_x``).
    alphas : sequence of float
        The grid (positive, finite).
    cv : int
        Number of folds (unshuffled KFold, so folds are blocks of consecutive rows).
    backend : str
        See :func:`brainldm.device.himalaya_backend`; any himalaya backend (``numpy``, ``torch``,
        ``torch_cuda``, ...): the computation runs on it.
    standardize : bool
        z-score X's columns with the training rows' statistics first (the decoders,
        whose X is voxels). False keeps X's column scales: for X already centred and
        scaled by the caller, such as the encoding models' PCA features, whose common
        scale keeps the PCA spectrum (z-scoring would whiten it and change the fits).
        Either way X is centred on the training rows, as himalaya does with
        ``fit_intercept=True`` (for already centred X that shifts it by rounding only).
    overwrite_x : bool
        Centre float32 ``x_train`` and ``x_test`` in place instead of copying them (for arrays
        the caller made for this engine and drops: one copy of X less in memory).

    Raises
    ------
    ValueError
        An empty or non-positive alpha grid, X without columns, train and test of
        different widths, a bad fold count, NaN or infinite X.
    """

    def __init__(self, x_train: np.ndarray, x_test: np.ndarray, alphas, cv: int = 5, backend: str = "auto",
                 standardize: bool = True, overwrite_x: bool = False):
        self.alphas = _check_alphas(alphas)
        if x_train.shape[1] == 0:
            raise ValueError("X has no columns (an ROI with no voxels?)")
        if x_test.shape[1] != x_train.shape[1]:
            raise ValueError(f"X test has {x_test.shape[1]} columns, X train {x_train.shape[1]}")
        if isinstance(cv, bool) or not isinstance(cv, (int, np.integer)) or cv < 2:
            raise ValueError(f"cv must be an integer number of folds >= 2, got {cv!r}")
        if cv > len(x_train):
            raise ValueError(f"{cv}-fold CV needs at least {cv} training rows, X has {len(x_train)}")
        for label, array in (("X train", x_train), ("X test", x_test)):
            check_finite(label, array)
        self.backend_name = himalaya_backend(backend)
        self.backend = array_backend(self.backend_name)
        if standardize:
            scaler = Standardizer.fit(x_train)
            xt, xs = scaler.transform(x_train), scaler.transform(x_test)
        else:  # copies (unless the caller gives them away): the arrays are centred below
            xt = np.asarray(x_train, dtype=np.float32) if overwrite_x else np.array(x_train, dtype=np.float32)
            xs = np.asarray(x_test, dtype=np.float32) if overwrite_x else np.array(x_test, dtype=np.float32)
        offset = xt.mean(axis=0, dtype=np.float64).astype(np.float32)  # ~0 when standardised; himalaya centres too
        xt -= offset
        xs -= offset
        self.n_train, self.n_test = len(xt), len(xs)
        self.bounds = fold_bounds(self.n_train, int(cv))
        self._x = self.backend.asarray(xt)
        self._x_test = self.backend.asarray(xs)  # centred: the split predictions' columns
        self._folds, self._full = _diagonalise(self.backend, self._x, self._x_test, self.bounds)

    def fit(self, y, name: str = "Y train", groups: list[slice] | None = None) -> BatchFit:
        """Fit one batch of targets ``y`` ``(n_train, batch)``; its test predictions and hyperparameters.

        ``y`` is read as float32 and never modified; NaN or infinite values raise a
        ValueError naming ``name``. ``groups``: column slices of X (feature bands); the
        test predictions of each group's columns alone are returned too, as
        ``split`` (without the intercept: their sum plus the targets' training means is
        ``predictions``).
        """
        y = np.asarray(y, dtype=np.float32)  # a view of an in-memory float32 array: not copied
        if y.ndim != 2 or len(y) != self.n_train:
            raise ValueError(f"{name}: shape {y.shape}, expected ({self.n_train}, n_targets)")
        check_finite(name, y)
        y_mean = y.mean(axis=0, dtype=np.float64).astype(np.float32)
        predictions, best, scores, z = _fit_batch(self.backend, self._x, y, y_mean, self._folds, self._full,
                                                  self.bounds, self.alphas)
        predictions += y_mean
        split = None
        if groups is not None:
            weights = self.backend.matmul(self._full.vectors, z)  # the refit's coefficients on X's columns
            split = np.stack([self.backend.to_numpy(self.backend.matmul(self._x_test[:, group], weights[group]))
                              for group in groups])
        return BatchFit(predictions, best, scores, split)

    def at_edge(self, best_alphas: np.ndarray) -> np.ndarray:
        """True where a chosen alpha is the smallest or largest of the grid."""
        return np.isclose(best_alphas, self.alphas.min()) | np.isclose(best_alphas, self.alphas.max())


def fit_predict(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    alphas,
    cv: int = 5,
    backend: str = "auto",
    n_targets_batch: int | None = None,
) -> RidgeFit:
    """Ridge with an alpha per target chosen by K-fold CV, fitted on train, predicting test.

    The decoders' entry point: :class:`RidgeCVEngine` on X standardised with the
    training rows' statistics (an intercept is fitted: the targets are latents that
    need not be zero-mean in every fold), targets read and fitted ``n_targets_batch`` at
    a time against the folds' decompositions, computed once; the test predictions of
    all targets are gathered into one array. Results: those of himalaya's
    ``RidgeCV(alphas, cv=cv, fit_intercept=True, solver_params={"local_alpha": True})``
    on the standardised X.

    Parameters
    ----------
    x_train, x_test : numpy.ndarray
        ``(n_train, n_features)``, ``(n_test, n_features)``.
    y_train : array-like
        ``(n_train, n_targets)``; anything with ``shape`` and ``[:, a:b]``
        (e.g. :class:`RowsOf` over an HDF5 dataset), read once, one target batch at a time.
    alphas : sequence of float
        The grid.
    cv : int
        Number of folds (unshuffled KFold, so folds are blocks of consecutive trials).
    backend : str
        See :func:`brainldm.device.himalaya_backend`.
    n_targets_batch : int, optional
        Targets per batch (all at once when None).
    """
    _check_alphas(alphas)
    if len(x_train) != len(y_train):
        raise ValueError(f"X has {len(x_train)} training rows but Y has {len(y_train)}: they must match")
    engine = RidgeCVEngine(x_train, x_test, alphas, cv=cv, backend=backend, standardize=True)
    n_targets = y_train.shape[1]
    batch = n_targets if not n_targets_batch else int(n_targets_batch)
    predictions = np.empty((len(x_test), n_targets), dtype=np.float32)
    best_alphas = np.empty(n_targets)
    cv_scores = np.empty(n_targets)
    for start in range(0, n_targets, batch):
        stop = min(start + batch, n_targets)
        fit = engine.fit(y_train[:, start:stop], f"Y train (targets {start}-{stop})")
        predictions[:, start:stop] = fit.predictions
        best_alphas[start:stop], cv_scores[start:stop] = fit.best_alphas, fit.cv_scores
        del fit
        log.info("ridge (%s): targets %d-%d of %d", engine.backend_name, start, stop, n_targets)
    return RidgeFit(predictions, best_alphas, cv_scores, engine.at_edge(best_alphas))
