"""Cross-validated ridge with an alpha per target, on planted linear problems."""

from __future__ import annotations

import numpy as np
import pytest

from brainldm.ridge import RidgeCVEngine, RowsOf, Standardizer, fit_predict, fold_bounds
from brainldm.stats import columnwise_correlation

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


def himalaya_reference(x_train, y_train, x_test, alphas, cv=5):
    """himalaya's own RidgeCV (alpha per target, intercept) on the same standardised X."""
    from himalaya.backend import set_backend
    from himalaya.ridge import RidgeCV

    backend = set_backend("numpy")
    scaler = Standardizer.fit(x_train)
    model = RidgeCV(alphas=alphas, cv=cv, fit_intercept=True, solver_params={"local_alpha": True, "warn": False})
    model.fit(scaler.transform(x_train), np.asarray(y_train, np.float32))
    return (backend.to_numpy(model.predict(scaler.transform(x_test))), backend.to_numpy(model.best_alphas_),
            backend.to_numpy(model.cv_scores_).reshape(-1))


@pytest.mark.parametrize(
    ("n_train", "n_features", "backend", "batch"),
    [(203, 30, "numpy", None), (157, 60, "numpy", 4), (90, 120, "numpy", 5), (203, 30, "torch", 7)],
)
def test_same_results_as_himalaya_ridgecv(rng, n_train, n_features, backend, batch):
    """Same folds, score, alpha per target, intercept and predictions as himalaya's RidgeCV.

    Row counts not divisible by the folds, targets with different noise and means, and
    (90 x 120) more voxels than rows.
    """
    if backend == "torch":
        pytest.importorskip("torch")
    n_targets, n_test = 17, 40
    x = rng.normal(size=(n_train + n_test, n_features)) * rng.uniform(0.5, 4, n_features)
    x += rng.normal(size=n_features) * 3
    y = x @ rng.normal(size=(n_features, n_targets)) + rng.normal(size=n_targets) * 10
    y += rng.normal(size=y.shape) * rng.uniform(0.5, 60, n_targets)
    x_train, x_test = x[:n_train].astype(np.float32), x[n_train:].astype(np.float32)
    y_train = y[:n_train].astype(np.float32)
    y_copy = y_train.copy()
    fit = fit_predict(x_train, y_train, x_test, ALPHAS, cv=5, backend=backend, n_targets_batch=batch)
    predictions, best_alphas, cv_scores = himalaya_reference(x_train, y_train, x_test, ALPHAS)
    assert len(np.unique(best_alphas)) > 3  # the targets do need different alphas
    np.testing.assert_allclose(fit.best_alphas, best_alphas, rtol=1e-5)
    np.testing.assert_allclose(fit.predictions, predictions, rtol=1e-4, atol=1e-4 * np.abs(predictions).max())
    np.testing.assert_allclose(fit.cv_scores, cv_scores, rtol=1e-4)
    np.testing.assert_array_equal(y_train, y_copy)  # the caller's targets are not centred in place


def test_folds_are_unshuffled_kfold():
    from sklearn.model_selection import KFold

    for n_rows, cv in ((100, 5), (103, 5), (7, 7), (24980, 5)):
        expected = [(int(val[0]), int(val[-1]) + 1) for _, val in KFold(cv).split(np.zeros(n_rows))]
        assert fold_bounds(n_rows, cv) == expected


def test_alpha_at_the_edge_is_flagged(problem):
    x_train, y_train, x_test, _ = problem
    fit = fit_predict(x_train, y_train, x_test, [1e6, 1e7], backend="numpy")
    assert fit.alpha_at_edge.all()


@pytest.mark.parametrize(("cv", "message"), [(1, "cv must be an integer"), (2.5, "cv must be an integer"),
                                             (301, "301-fold CV needs at least 301 training rows")])
def test_bad_fold_count_is_named(problem, cv, message):
    x_train, y_train, x_test, _ = problem
    with pytest.raises(ValueError, match=message):
        fit_predict(x_train, y_train, x_test, ALPHAS, cv=cv, backend="numpy")


def test_standardizer_uses_training_statistics(rng):
    train = rng.normal(5, 2, size=(100, 3))
    scaler = Standardizer.fit(train)
    np.testing.assert_allclose(scaler.transform(train).mean(0), 0, atol=1e-5)
    constant = Standardizer.fit(np.ones((10, 2)))
    assert np.isfinite(constant.transform(np.ones((3, 2)))).all()


def test_common_scale_keeps_the_relative_variance_of_columns(rng):
    """As for PCA scores: centred, one scale for all, so the spectrum survives (mean variance 1)."""
    sds = np.array([10.0, 3.0, 0.1])
    train = 4 + rng.normal(size=(500, 3)) * sds
    out = Standardizer.fit_common_scale(train).transform(train)
    np.testing.assert_allclose(out.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(out.var(0).mean(), 1, rtol=1e-5)
    np.testing.assert_allclose(out.std(0) / out.std(0)[0], train.std(0) / train.std(0)[0], rtol=1e-5)
    assert np.isfinite(Standardizer.fit_common_scale(np.ones((10, 2))).transform(np.ones((3, 2)))).all()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda x, y, t, a: (x, y[:-1], t, a), "X has 300 training rows but Y has 299"),
        (lambda x, y, t, a: (np.where(np.arange(len(x))[:, None] == 7, np.nan, x), y, t, a), r"X train: .*NaN.*rows \[7\]"),
        (lambda x, y, t, a: (x, np.where(np.arange(len(y))[:, None] == 3, np.inf, y), t, a), r"Y train .*infinite.*rows \[3\]"),
        (lambda x, y, t, a: (x, y, t, []), "the alpha grid is empty"),
        (lambda x, y, t, a: (x, y, t, [1.0, -2.0]), r"alphas must be positive.*-2\.0"),
        (lambda x, y, t, a: (x, y, t, [1.0, np.nan]), "alphas must be positive and finite"),
        (lambda x, y, t, a: (x, y, np.where(np.arange(len(t))[:, None] == 2, np.inf, t), a), r"X test: .*rows \[2\]"),
        (lambda x, y, t, a: (x[:, :0], y, t[:, :0], a), "no columns"),
    ],
)
def test_bad_input_is_named(problem, mutate, message):
    x_train, y_train, x_test, _ = problem
    args = mutate(x_train, y_train, x_test, ALPHAS)
    with pytest.raises(ValueError, match=message):
        fit_predict(*args[:3], args[3], backend="numpy")


def test_engine_keeps_the_callers_scales_when_not_standardising(rng):
    """standardize=False: himalaya RidgeCV on X as given (uncentred, columns of very different scales),
    batch by batch against one decomposition; the caller's X is not modified."""
    from himalaya.backend import set_backend
    from himalaya.ridge import RidgeCV

    n_train, n_test, n_features, n_targets = 180, 30, 25, 12
    x = rng.normal(size=(n_train + n_test, n_features)) * np.geomspace(8, 0.05, n_features) + 4
    y = x @ rng.normal(size=(n_features, n_targets)) + rng.normal(size=(len(x), n_targets)) * rng.uniform(1, 40, n_targets)
    x_train, x_test = x[:n_train].astype(np.float32), x[n_train:].astype(np.float32)
    y_train = y[:n_train].astype(np.float32)
    x_copy = x_train.copy()
    engine = RidgeCVEngine(x_train, x_test, ALPHAS, cv=5, backend="numpy", standardize=False)
    fits = [engine.fit(y_train[:, start:start + 5]) for start in range(0, n_targets, 5)]
    backend = set_backend("numpy")
    model = RidgeCV(alphas=ALPHAS, cv=5, fit_intercept=True, solver_params={"local_alpha": True, "warn": False})
    model.fit(x_train, y_train)
    predictions = backend.to_numpy(model.predict(x_test))
    assert len(np.unique(backend.to_numpy(model.best_alphas_))) > 2
    np.testing.assert_allclose(np.concatenate([f.best_alphas for f in fits]), model.best_alphas_, rtol=1e-5)
    np.testing.assert_allclose(np.concatenate([f.cv_scores for f in fits]), model.cv_scores_.reshape(-1), rtol=1e-4)
    np.testing.assert_allclose(np.hstack([f.predictions for f in fits]), predictions, rtol=1e-4,
                               atol=1e-4 * np.abs(predictions).max())
    np.testing.assert_array_equal(x_train, x_copy)
    # z-scoring would whiten the columns: a different model on this X
    standardised = RidgeCVEngine(x_train, x_test, ALPHAS, cv=5, backend="numpy").fit(y_train)
    assert not np.allclose(standardised.predictions, predictions, rtol=1e-3)
    with pytest.raises(ValueError, match=r"Y train: shape \(179, 12\), expected \(180, n_targets\)"):
        engine.fit(y_train[1:])
