"""Statistics of encoding models: Pearson r per voxel, its one-sided p, Benjamini-Hochberg FDR.

The null hypothesis of the paper (section 3.5): the predicted and the measured test
responses of a voxel are two independent Gaussian vectors of length ``n`` (the number
of test images). Under it ``t = r sqrt((n - 2) / (1 - r^2))`` follows Student's t with
``n - 2`` degrees of freedom exactly, so the one-sided p of an observed ``r`` is
``P(T >= t)``; no permutation is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

__all__ = ["columnwise_correlation", "pearson_r", "r_pvalue", "fdr_bh", "VoxelStats", "voxel_stats", "r2_score",
           "r2_score_split"]


def columnwise_correlation(a: np.ndarray, b: np.ndarray, axis: int = 0) -> np.ndarray:
    """Pearson correlation between matching columns (``axis=0``) or rows (``axis=1``); 0 where undefined."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a - a.mean(axis=axis, keepdims=True)
    b = b - b.mean(axis=axis, keepdims=True)
    denom = np.sqrt((a * a).sum(axis=axis) * (b * b).sum(axis=axis))
    return np.divide((a * b).sum(axis=axis), denom, out=np.zeros_like(denom), where=denom > 0)


def pearson_r(predicted: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Pearson r between matching columns (one column per voxel); 0 where a column is constant."""
    predicted, measured = np.asarray(predicted), np.asarray(measured)
    if predicted.shape != measured.shape:
        raise ValueError(f"predicted {predicted.shape} and measured {measured.shape} responses differ in shape")
    if predicted.ndim != 2:
        raise ValueError(f"expected (n_samples, n_voxels) arrays, found {predicted.ndim}-D")
    return columnwise_correlation(predicted, measured, axis=0)


def r_pvalue(r, n: int) -> np.ndarray:
    """One-sided p of Pearson's ``r`` against independent Gaussian vectors of length ``n``.

    ``p = P(R >= r)`` computed exactly through ``t = r sqrt((n - 2) / (1 - r^2))``
    with ``n - 2`` degrees of freedom (``r = 1`` gives 0, ``r = -1`` gives 1).

    Parameters
    ----------
    r : array-like
        Correlations in [-1, 1] (values outside are clipped: floating-point noise).
    n : int
        Length of the correlated vectors (number of test images), at least 3.
    """
    n = int(n)
    if n < 3:
        raise ValueError(f"a p-value of r needs at least 3 samples, found {n}")
    r = np.clip(np.asarray(r, dtype=np.float64), -1.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = r * np.sqrt((n - 2) / (1.0 - r * r))
    t = np.where(r >= 1.0, np.inf, np.where(r <= -1.0, -np.inf, t))
    return special.stdtr(n - 2, -t)  # Student's t survival function (scipy.stats.t.sf, without its import)


def fdr_bh(pvalues, q: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Benjamini-Hochberg FDR over all given p-values (statsmodels ``fdr_bh``).

    Parameters
    ----------
    pvalues : array-like
        One p per test (voxel); NaN is not allowed.
    q : float
        False discovery rate in (0, 1).

    Returns
    -------
    qvalues : numpy.ndarray
        BH-adjusted p-values (the smallest FDR at which each test is significant).
    significant : numpy.ndarray
        Boolean mask ``qvalues <= q`` (statsmodels' ``reject``).
    """
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=np.float64)
    if not 0 < q < 1:
        raise ValueError(f"FDR level q must be in (0, 1), got {q}")
    if p.ndim != 1:
        raise ValueError(f"expected a vector of p-values, found shape {p.shape}")
    if p.size == 0:
        return np.zeros(0), np.zeros(0, dtype=bool)
    if not np.isfinite(p).all():
        raise ValueError(f"{int((~np.isfinite(p)).sum())} p-values are NaN or infinite")
    reject, qvalues, _, _ = multipletests(p, alpha=q, method="fdr_bh")
    return qvalues, np.asarray(reject, dtype=bool)


def r2_score(predicted: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Coefficient of determination per column, ``1 - SS_res / SS_tot``; 0 where a column is constant."""
    predicted = np.asarray(predicted, dtype=np.float64)
    measured = np.asarray(measured, dtype=np.float64)
    ss_res = ((measured - predicted) ** 2).sum(axis=0)
    ss_tot = ((measured - measured.mean(axis=0)) ** 2).sum(axis=0)
    return np.divide(ss_tot - ss_res, ss_tot, out=np.zeros_like(ss_tot), where=ss_tot > 0)


def r2_score_split(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """R^2 of a joint model split among its bands by the product measure (himalaya's ``r2_score_split``).

    The same arithmetic in the same order as himalaya 0.4's (``include_correlation=True``), without
    importing himalaya: band ``k`` gets ``sum_i (2 y_i yhat_ki - yhat_ki sum_j yhat_ji) / sum_i y_i^2``,
    so the bands' scores sum to the joint R^2. ``y_pred`` is cast to ``y_true``'s dtype; NaN and
    infinite predictions count as 0.

    Parameters
    ----------
    y_true : numpy.ndarray
        ``(n_samples, n_targets)``, zero-mean over samples (as himalaya assumes).
    y_pred : numpy.ndarray
        ``(n_bands, n_samples, n_targets)``: each band's part of the joint prediction.

    Returns
    -------
    numpy.ndarray
        ``(n_bands, n_targets)``.
    """
    y_true = np.asarray(y_true)
    y_pred = np.array(y_pred, dtype=y_true.dtype)
    y_pred[~np.isfinite(y_pred)] = 0
    sst = (y_true ** 2).sum(0)
    r2 = np.zeros_like(y_pred[:, 0, :])
    for band in range(len(y_pred)):
        asst = (y_pred[band] * y_pred).sum(0)
        r2[band, :] = ((2 * (y_true * y_pred[band]) - asst) / sst).sum(0)
    return r2


@dataclass
class VoxelStats:
    """Per-voxel test statistics of one model."""

    r: np.ndarray
    p: np.ndarray
    q: np.ndarray
    significant: np.ndarray
    n: int  # number of test samples
    fdr_q: float  # the FDR level used


def voxel_stats(r: np.ndarray, n: int, q: float = 0.05, defined: np.ndarray | None = None) -> VoxelStats:
    """p (one-sided), BH q-values and significance of per-voxel correlations.

    ``defined`` marks voxels whose r is defined (measured test responses not constant);
    the others get p = 1 and are kept in the FDR family (they are voxels of the map).
    """
    r = np.asarray(r, dtype=np.float64)
    p = r_pvalue(r, n)
    if defined is not None:
        p = np.where(defined, p, 1.0)
    qvalues, significant = fdr_bh(p, q)
    return VoxelStats(r=r, p=p, q=qvalues, significant=significant, n=int(n), fdr_q=float(q))
