"""PCA fitted on training images only, exact, in either Gram orientation."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from brainldm.reduce import fit_pca, reduce_feature


def _reference(x, k):
    centred = x - x.mean(0)
    _, s, vt = np.linalg.svd(centred.astype(np.float64), full_matrices=False)
    return s[:k] ** 2 / (len(x) - 1), vt[:k]


@pytest.mark.parametrize("shape", [(40, 300), (300, 40)])
def test_pca_matches_svd_in_both_orientations(rng, shape):
    x = (rng.normal(size=shape) @ np.diag(np.linspace(3, 0.1, shape[1]))).astype(np.float32)
    k = 10
    pca = fit_pca(x, k)
    variance, vt = _reference(x, k)
    np.testing.assert_allclose(pca.explained_variance, variance, rtol=1e-4)
    overlap = np.abs(np.sum(pca.components * vt, axis=1))  # same axes up to sign
    np.testing.assert_allclose(overlap, 1, atol=1e-3)
    projected = pca.transform(x)
    np.testing.assert_allclose(projected.var(0, ddof=1), variance, rtol=1e-3)


def test_components_are_capped_by_rank(rng):
    x = rng.normal(size=(20, 50)).astype(np.float32)
    assert len(fit_pca(x, 6400).components) == 19


def test_reduce_feature_never_sees_test_images(rng, tmp_path):
    ids = np.arange(0, 60, 2)
    features = rng.normal(size=(len(ids), 30)).astype(np.float32)
    with h5py.File(tmp_path / "f.h5", "w") as h5:
        h5["features"], h5["nsd_ids"] = features, ids
    test_ids = ids[:5]
    trials = pd.DataFrame({"nsd_id": np.concatenate([ids, ids[:5]]),
                           "split": np.where(np.isin(np.concatenate([ids, ids[:5]]), test_ids), "test", "train")})
    trials.to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    reduce_feature(tmp_path / "f.h5", tmp_path / "t.tsv", tmp_path / "out.h5", n_components=8)
    with h5py.File(tmp_path / "out.h5", "r") as h5:
        np.testing.assert_array_equal(h5["test_nsd_ids"][:], test_ids)
        train_ids = h5["train_nsd_ids"][:]
        assert not set(train_ids) & set(test_ids)
        np.testing.assert_allclose(h5["mean"][:], features[np.isin(ids, train_ids)].mean(0), rtol=1e-5, atol=1e-6)
        before = h5["test"][:]
    # changing the test images' features changes their projections but not the fit
    features[:5] += 100
    with h5py.File(tmp_path / "f.h5", "w") as h5:
        h5["features"], h5["nsd_ids"] = features, ids
    reduce_feature(tmp_path / "f.h5", tmp_path / "t.tsv", tmp_path / "out2.h5", n_components=8)
    with h5py.File(tmp_path / "out.h5", "r") as a, h5py.File(tmp_path / "out2.h5", "r") as b:
        np.testing.assert_array_equal(a["train"][:], b["train"][:])
        np.testing.assert_array_equal(a["mean"][:], b["mean"][:])
        assert not np.allclose(before, b["test"][:])


def test_missing_feature_rows_are_named(rng, tmp_path):
    with h5py.File(tmp_path / "f.h5", "w") as h5:
        h5["features"], h5["nsd_ids"] = rng.normal(size=(3, 4)).astype(np.float32), np.array([1, 2, 3])
    pd.DataFrame({"nsd_id": [1, 2, 3, 9], "split": ["train"] * 3 + ["test"]}).to_csv(tmp_path / "t.tsv", sep="\t")
    with pytest.raises(ValueError, match=r"no features for 73k ids \[9\]"):
        reduce_feature(tmp_path / "f.h5", tmp_path / "t.tsv", tmp_path / "o.h5", 2)
    assert not (tmp_path / "o.h5").exists()
