"""Two-way identification: both directions by hand, identical sets, shuffled pairings, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from brainldm.evaluation.identification import (
    correlation_matrix,
    sample_mean_identification,
    standardize_rows,
    two_way_identification,
)

# r[i, j]: original i against reconstruction j
R = np.array([[0.90, 0.50, 0.95],
              [0.20, 0.80, 0.10],
              [0.30, 0.85, 0.70]])


def test_original_fixed_by_hand():
    # row 0: 0.90 > 0.50 yes, > 0.95 no; row 1: 0.80 > 0.20, 0.10; row 2: 0.70 > 0.30 yes, > 0.85 no
    np.testing.assert_allclose(two_way_identification(R, fixed="original"), [0.5, 1.0, 0.5])


def test_reconstruction_fixed_by_hand():
    # column 0: 0.90 > 0.20, 0.30; column 1: 0.80 > 0.50 yes, > 0.85 no; column 2: 0.70 > 0.95 no, > 0.10 yes
    np.testing.assert_allclose(two_way_identification(R, fixed="reconstruction"), [1.0, 0.5, 0.5])


def test_ties_lose():
    assert two_way_identification(np.ones((3, 3)), fixed="original").tolist() == [0, 0, 0]


def test_correlation_matrix_is_pearson(rng):
    a, b = rng.normal(size=(5, 40)), rng.normal(size=(4, 40))
    np.testing.assert_allclose(correlation_matrix(a, b), np.corrcoef(a, b)[:5, 5:], atol=1e-6)


def test_constant_features_correlate_zero():
    z = standardize_rows(np.array([[2.0, 2.0, 2.0], [1.0, 2.0, 3.0]]))
    assert np.all(z[0] == 0) and np.isclose(np.linalg.norm(z[1]), 1)


@pytest.mark.parametrize("fixed", ["original", "reconstruction"])
def test_identical_sets_score_one(rng, fixed):
    features = rng.normal(size=(30, 100))
    assert np.all(two_way_identification(correlation_matrix(features, features), fixed) == 1.0)


@pytest.mark.parametrize("fixed", ["original", "reconstruction"])
def test_shuffled_pairing_is_chance(rng, fixed):
    # Each item's accuracy is the rank of its own r among n - 1 exchangeable others: uniform on [0, 1],
    # SD 0.29, so the mean of n = 200 has SE 0.02; 0.08 is four standard errors.
    n = 200
    features = rng.normal(size=(n, 100))
    shuffled = features[np.roll(np.arange(n), 1)]  # every reconstruction paired with another image
    accuracy = two_way_identification(correlation_matrix(features, shuffled), fixed).mean()
    assert abs(accuracy - 0.5) < 0.08


def test_sample_mean_averages_correlations_first():
    # sample 0 alone identifies item 0 against 1, sample 1 alone does not; their mean does
    r = np.stack([[[0.9, 0.1], [0.0, 0.9]], [[0.2, 0.5], [0.0, 0.9]]], axis=2)
    assert two_way_identification(r[:, :, 1], "original")[0] == 0
    np.testing.assert_allclose(sample_mean_identification(r), [1.0, 1.0])


@pytest.mark.parametrize(
    ("r", "message"),
    [(np.zeros((2, 3)), "as many originals as reconstructions"), (np.zeros((1, 1)), "at least 2")],
)
def test_bad_matrices(r, message):
    with pytest.raises(ValueError, match=message):
        two_way_identification(r, "original")


def test_unknown_side_and_feature_sizes():
    with pytest.raises(ValueError, match="fixed must be one of"):
        two_way_identification(R, "both")
    with pytest.raises(ValueError, match="feature sets of different sizes"):
        correlation_matrix(np.zeros((3, 4)), np.zeros((3, 5)))
