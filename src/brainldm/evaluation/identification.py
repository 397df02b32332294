"""Two-way identification from feature correlations.

``r[i, j]`` is the Pearson correlation between the features of original ``i``
and of reconstruction ``j``. The two conventions in use fix a different side:

* ``fixed="original"`` (Takagi & Nishimoto 2023, their ``identification.py``):
  for original ``i``, its own reconstruction wins against reconstruction ``j``
  when ``r[i, i] > r[i, j]``.
* ``fixed="reconstruction"`` (Brain-Diffuser, MindEye): for reconstruction ``j``,
  its own original wins against original ``i`` when ``r[j, j] > r[i, j]``.

An item's accuracy is the fraction of the ``n - 1`` others it wins against
(ties lose, as in both codes); chance is 0.5.
"""

from __future__ import annotations

import numpy as np

FIXED_SIDES = ("original", "reconstruction")


def standardize_rows(features: np.ndarray) -> np.ndarray:
    """Rows centred and scaled to unit norm, so that dot products are Pearson r.

    A constant row (no variance, e.g. a dead ReLU layer) becomes zeros: its
    correlation with anything is taken as 0 rather than undefined.
    """
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"features must be (items, dimensions), found shape {x.shape}")
    x = x - x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def correlation_matrix(originals: np.ndarray, reconstructions: np.ndarray) -> np.ndarray:
    """Pearson r between every original (rows) and every reconstruction (columns)."""
    a, b = np.asarray(originals), np.asarray(reconstructions)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets of different sizes: originals {a.shape}, reconstructions {b.shape}")
    return standardize_rows(a) @ standardize_rows(b).T


def two_way_identification(r: np.ndarray, fixed: str) -> np.ndarray:
    """Accuracy of each item in two-way identification.

    Parameters
    ----------
    r : numpy.ndarray
        (n, n) correlations, originals in rows and their reconstructions in the
        same order in columns.
    fixed : {"original", "reconstruction"}
        The side held fixed (see the module's notes).

    Returns
    -------
    numpy.ndarray
        (n,) fraction of the other ``n - 1`` items each original (``fixed="original"``)
        or reconstruction (``fixed="reconstruction"``) wins against.
    """
    r = np.asarray(r, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] != r.shape[1]:
        raise ValueError(f"identification needs as many originals as reconstructions, found r of shape {r.shape}")
    if r.shape[0] < 2:
        raise ValueError("identification needs at least 2 test images")
    if fixed not in FIXED_SIDES:
        raise ValueError(f"fixed must be one of {FIXED_SIDES}, found {fixed!r}")
    own = np.diag(r)
    if fixed == "original":
        wins = own[:, None] > r  # row i: r[i, i] against r[i, j]
        return wins.sum(axis=1) / (len(r) - 1)
    wins = own[None, :] > r  # column j: r[j, j] against r[i, j]
    return wins.sum(axis=0) / (len(r) - 1)


def sample_mean_identification(r_samples: np.ndarray) -> np.ndarray:
    """The paper's protocol: correlations averaged over samples, then original-fixed identification.

    Parameters
    ----------
    r_samples : numpy.ndarray
        (n, n, n_samples): ``r[i, j, k]`` between original ``i`` and sample ``k``
        of the reconstruction of image ``j``.
    """
    r_samples = np.asarray(r_samples)
    if r_samples.ndim != 3:
        raise ValueError(f"expected (originals, reconstructions, samples), found shape {r_samples.shape}")
    return two_way_identification(r_samples.mean(axis=2), fixed="original")
