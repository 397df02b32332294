"""Cross-validated ridge with an alpha per target, on planted linear problems."""

from __future__ import annotations

import numpy as np
import pytest

from brainldm.ridge import RowsOf, Standardizer, columnwise_correlation, fit_predict, resolve_backend

ALPHAS = np.logspace(-2, 5, 15)


@pytest.fixture
def problem(rng):
    n_train, n_test, n_features = 300, 60, 40
    weights = rng.normal(size=(n_features, 6))
    x = rng.normal(size=(n_train + n_test, n_features)) * rng.uniform(0.5, 5, n_features) + 3
    noise_sd = np.array([0.1, 0.1, 1, 1, 30, 30])  # low to high noise targets
    y = (x - 3) @ weights + 7 + rng.normal(size=(len(x), 6)) * noise_sd * np.abs(weights).sum(0) / 3
    return x[:n_train].astype(np.float32), y[:n_train], x[n_train:].astype(np.float32), y[n_train:]


def test_recovers_planted_mapping_with_alpha_per_target(problem):
    x_train, y_train, x_test, y_test = problem
    fit = fit_predict(x_train, y_train, x_test, ALPHAS, cv=5, backend="numpy")
    r = columnwise_correlation(fit.predictions, y_test)
    assert np.all(r[:2] > 0.99) and np.all(r[2:4] > 0.6)
    assert fit.best_alphas[4:].min() > fit.best_alphas[:2].max()  # noisier targets need more shrinkage
    # an intercept is fitted: predictions are centred like the targets, not like zero
    assert abs(fit.predictions[:, 0].mean() - y_test[:, 0].mean()) < 0.5 * y_test[:, 0].std()


def test_target_batches_give_the_same_predictions(problem):
    x_train, y_train, x_test, _ = problem
    whole = fit_predict(x_train, y_train, x_test, ALPHAS, backend="numpy")
    rows = np.arange(len(y_train))
    batched = fit_predict(x_train, RowsOf(y_train, rows), x_test, ALPHAS, backend="numpy", n_targets_batch=4)
    np.testing.assert_allclose(batched.predictions, whole.predictions, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(batched.best_alphas, whole.best_alphas)


def test_alpha_at_the_edge_is_flagged(problem):
    x_train, y_train, x_test, _ = problem
    fit = fit_predict(x_train, y_train, x_test, [1e6, 1e7], backend="numpy")
    assert fit.alpha_at_edge.all()


def test_standardizer_uses_training_statistics(rng):
    train = rng.normal(5, 2, size=(100, 3))
    scaler = Standardizer.fit(train)
    np.testing.assert_allclose(scaler.transform(train).mean(0), 0, atol=1e-5)
    constant = Standardizer.fit(np.ones((10, 2)))
    assert np.isfinite(constant.transform(np.ones((3, 2)))).all()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda x, y, t, a: (x, y[:-1], t, a), "X has 300 training rows but Y has 299"),
        (lambda x, y, t, a: (np.where(np.arange(len(x))[:, None] == 7, np.nan, x), y, t, a), r"X train: .*NaN.*rows \[7\]"),
        (lambda x, y, t, a: (x, np.where(np.arange(len(y))[:, None] == 3, np.inf, y), t, a), r"Y train .*infinite.*rows \[3\]"),
        (lambda x, y, t, a: (x, y, t, []), "the alpha grid is empty"),
        (lambda x, y, t, a: (x[:, :0], y, t[:, :0], a), "no columns"),
    ],
)
def test_bad_input_is_named(problem, mutate, message):
    x_train, y_train, x_test, _ = problem
    args = mutate(x_train, y_train, x_test, ALPHAS)
    with pytest.raises(ValueError, match=message):
        fit_predict(*args[:3], args[3], backend="numpy")


def test_auto_backend_without_cuda():
    assert resolve_backend("auto") in {"numpy", "torch_cuda"}
    assert resolve_backend("torch") == "torch"
