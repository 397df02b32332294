"""Ridge regression with an alpha per target chosen by cross-validation (himalaya).

Shared by decoding (voxels -> latent dimensions) and encoding (features -> voxels).
The backend is a parameter: ``auto`` means ``torch_cuda`` when CUDA is present,
``numpy`` otherwise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


def resolve_backend(backend: str = "auto") -> str:
    """himalaya backend name for ``backend`` (``auto``, ``numpy``, ``torch``, ``torch_cuda``, ...)."""
    if backend != "auto":
        return backend
    try:
        import torch

        return "torch_cuda" if torch.cuda.is_available() else "numpy"
    except ImportError:
        return "numpy"


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
    cv_scores: np.ndarray  # (n_targets,) best cross-validated score
    alpha_at_edge: np.ndarray  # (n_targets,) bool: chosen alpha is the smallest or largest of the grid


def fit_predict(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    alphas,
    cv: int = 5,
    backend: str = "auto",
    n_targets_batch: int | None = None,
) -> RidgeFit:
    """Fit ``RidgeCV`` (alpha per target, K-fold CV) on train and predict test.

    X is standardised with the training rows' statistics; an intercept is fitted
    (the targets are latents or betas that need not be zero-mean in every fold).
    Targets are processed in batches of ``n_targets_batch`` to bound memory.

    Parameters
    ----------
    x_train, x_test : numpy.ndarray
        ``(n_train, n_features)``, ``(n_test, n_features)``.
    y_train : array-like
        ``(n_train, n_targets)``; anything with ``shape`` and ``[:, a:b]``
        (e.g. :class:`RowsOf` over an HDF5 dataset), read one target batch at a time.
    alphas : sequence of float
        The grid.
    cv : int
        Number of folds (unshuffled KFold, so folds are blocks of consecutive trials).
    backend : str
        See :func:`resolve_backend`.
    n_targets_batch : int, optional
        Targets per batch (all at once when None).
    """
    from himalaya.backend import set_backend
    from himalaya.ridge import RidgeCV

    alphas = np.asarray(alphas, dtype=np.float64)
    if alphas.size == 0:
        raise ValueError("the alpha grid is empty")
    if np.any(alphas <= 0):
        raise ValueError(f"alphas must be positive, found {alphas[alphas <= 0].tolist()}")
    if len(x_train) != len(y_train):
        raise ValueError(f"X has {len(x_train)} training rows but Y has {len(y_train)}: they must match")
    if x_train.shape[1] == 0:
        raise ValueError("X has no columns (an ROI with no voxels?)")
    if x_test.shape[1] != x_train.shape[1]:
        raise ValueError(f"X test has {x_test.shape[1]} columns, X train {x_train.shape[1]}")
    for label, array in (("X train", x_train), ("X test", x_test)):
        check_finite(label, array)
    name = resolve_backend(backend)
    backend_module = set_backend(name, on_error="raise")
    scaler = Standardizer.fit(x_train)
    xt, xs = scaler.transform(x_train), scaler.transform(x_test)
    n_targets = y_train.shape[1]
    batch = n_targets if not n_targets_batch else int(n_targets_batch)
    predictions = np.empty((len(x_test), n_targets), dtype=np.float32)
    best_alphas = np.empty(n_targets)
    cv_scores = np.empty(n_targets)
    for start in range(0, n_targets, batch):
        stop = min(start + batch, n_targets)
        y_batch = np.asarray(y_train[:, start:stop], dtype=np.float32)
        check_finite(f"Y train (targets {start}-{stop})", y_batch)
        model = RidgeCV(alphas=alphas, cv=cv, fit_intercept=True,
                        solver_params={"local_alpha": True, "n_alphas_batch": None, "warn": False})
        model.fit(xt, y_batch)
        predictions[:, start:stop] = backend_module.to_numpy(model.predict(xs))
        best_alphas[start:stop] = backend_module.to_numpy(model.best_alphas_)
        cv_scores[start:stop] = np.asarray(backend_module.to_numpy(model.cv_scores_)).reshape(-1)
        log.info("ridge (%s): targets %d-%d of %d", name, start, stop, n_targets)
    edge = np.isclose(best_alphas, alphas.min()) | np.isclose(best_alphas, alphas.max())
    return RidgeFit(predictions, best_alphas, cv_scores, edge)


def columnwise_correlation(a: np.ndarray, b: np.ndarray, axis: int = 0) -> np.ndarray:
    """Pearson correlation between matching columns (``axis=0``) or rows (``axis=1``); 0 where undefined."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a - a.mean(axis=axis, keepdims=True)
    b = b - b.mean(axis=axis, keepdims=True)
    denom = np.sqrt((a * a).sum(axis=axis) * (b * b).sum(axis=axis))
    return np.divide((a * b).sum(axis=axis), denom, out=np.zeros_like(denom), where=denom > 0)
