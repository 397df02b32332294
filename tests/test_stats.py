"""Pearson r, its exact one-sided p against independent Gaussian vectors, and BH FDR."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from brainldm.stats import fdr_bh, pearson_r, r2_score, r2_score_split, r_pvalue, voxel_stats


def test_pearson_r_per_column(rng):
    a = rng.normal(size=(50, 4))
    b = a * [1, -2, 0, 0] + rng.normal(size=(50, 4)) * [0, 0, 1, 0]
    b[:, 3] = 5.0  # constant measured responses: r undefined -> 0
    r = pearson_r(a, b)
    np.testing.assert_allclose(r[:2], [1, -1], atol=1e-12)
    np.testing.assert_allclose(r[2], np.corrcoef(a[:, 2], b[:, 2])[0, 1], atol=1e-12)
    assert r[3] == 0
    with pytest.raises(ValueError, match="differ in shape"):
        pearson_r(a, b[:-1])


@pytest.mark.parametrize("n", [12, 60])
def test_p_value_matches_a_simulation_of_independent_gaussian_vectors(n):
    """Empirical P(r >= r0) over 200,000 pairs of independent Gaussian vectors of length n."""
    rng = np.random.default_rng(n)
    draws = 200_000
    r = np.empty(draws)
    for start in range(0, draws, 50_000):  # bounded memory
        a = rng.standard_normal((50_000, n))
        b = rng.standard_normal((50_000, n))
        r[start:start + 50_000] = pearson_r(a.T, b.T)
    for r0 in (-0.3, 0.0, 0.1, 0.2, 0.3, 0.45):
        empirical = (r >= r0).mean()
        expected = r_pvalue(r0, n)
        se = np.sqrt(expected * (1 - expected) / draws)
        assert abs(empirical - expected) < 4 * se + 1e-5, (n, r0, empirical, expected)


def test_p_value_edges_and_formula():
    n = 30
    assert r_pvalue(0.0, n) == pytest.approx(0.5)
    assert r_pvalue(1.0, n) == 0.0 and r_pvalue(-1.0, n) == 1.0
    assert r_pvalue(1.0 + 1e-9, n) == 0.0  # floating-point overshoot is clipped
    from scipy import stats

    r = 0.37
    t = r * np.sqrt((n - 2) / (1 - r * r))
    assert r_pvalue(r, n) == pytest.approx(stats.t.sf(t, n - 2), rel=1e-12)
    # the same as the one-sided test of scipy's pearsonr
    rng = np.random.default_rng(0)
    x = rng.normal(size=n)
    y = 0.3 * x + rng.normal(size=n)
    res = stats.pearsonr(x, y, alternative="greater")
    assert r_pvalue(res.statistic, n) == pytest.approx(res.pvalue, rel=1e-9)
    p = r_pvalue(np.linspace(-0.9, 0.9, 19), n)
    assert np.all(np.diff(p) < 0)  # larger r, smaller p
    with pytest.raises(ValueError, match="at least 3 samples"):
        r_pvalue(0.5, 2)


def test_fdr_by_hand():
    # p sorted: 0.001, 0.008, 0.039, 0.041, 0.042, 0.060 (m = 6); BH: p_(i) * m / i, then the
    # running minimum from the largest: 0.006, 0.024, min(0.078, .) , min(0.0615, .), 0.0504, 0.060
    p = np.array([0.042, 0.001, 0.060, 0.039, 0.008, 0.041])
    expected = np.array([0.0504, 0.006, 0.060, 0.0504, 0.024, 0.0504])
    q, significant = fdr_bh(p, 0.05)
    np.testing.assert_allclose(q, expected, rtol=1e-12)
    np.testing.assert_array_equal(significant, [False, True, False, False, True, False])
    reject, corrected, _, _ = multipletests(p, alpha=0.05, method="fdr_bh")
    np.testing.assert_allclose(q, corrected)
    np.testing.assert_array_equal(significant, reject)
    # at q = 0.06 everything up to p = 0.060 passes (0.0504 <= 0.06 and 0.06 <= 0.06)
    assert fdr_bh(p, 0.06)[1].all()


def test_fdr_rejects_bad_input():
    with pytest.raises(ValueError, match="q must be in"):
        fdr_bh([0.1], 0)
    with pytest.raises(ValueError, match="NaN"):
        fdr_bh([0.1, np.nan])
    q, sig = fdr_bh([], 0.05)
    assert q.size == 0 and sig.size == 0


def test_voxel_stats_undefined_voxels_are_never_significant():
    r = np.array([0.9, 0.9, 0.0])
    out = voxel_stats(r, 40, 0.05, defined=np.array([True, False, True]))
    assert out.p[1] == 1.0 and not out.significant[1]
    assert out.significant[0] and out.n == 40 and out.fdr_q == 0.05


def test_r2_score(rng):
    y = rng.normal(size=(30, 3))
    np.testing.assert_allclose(r2_score(y, y), 1)
    np.testing.assert_allclose(r2_score(np.zeros_like(y) + y.mean(0), y), 0, atol=1e-12)
    assert r2_score(np.zeros((5, 1)), np.ones((5, 1)))[0] == 0  # constant target: defined as 0


def test_split_r2_is_himalayas_product_measure(rng):
    from himalaya.backend import set_backend
    from himalaya.scoring import r2_score_split as himalaya_split

    set_backend("numpy")
    y = rng.normal(size=(30, 7))
    y -= y.mean(0)
    parts = np.stack([0.5 * y + rng.normal(size=y.shape), 0.2 * y + rng.normal(size=y.shape)]).astype(np.float32)
    ours = r2_score_split(y, parts)
    np.testing.assert_array_equal(ours, himalaya_split(y, parts.copy()))  # the same arithmetic, bit for bit
    np.testing.assert_allclose(ours.sum(0), 1 - ((y - parts.sum(0)) ** 2).sum(0) / (y ** 2).sum(0), rtol=1e-6)
    parts[0, 3, 2] = np.nan
    with pytest.warns(UserWarning):
        expected = himalaya_split(y, parts.copy())
    np.testing.assert_array_equal(r2_score_split(y, parts), expected)
