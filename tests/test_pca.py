"""PCA fitted on training images only, exact, in either Gram orientation, streamed in blocks."""

from __future__ import annotations

import tracemalloc

import h5py
import numpy as np
import pandas as pd
import pytest

from brainldm.feature_file import write_feature_file
from brainldm.pca import pca_scores, reduce_feature


def _reference(x, train_rows, test_rows, k):
    """Exact PCA by numpy's SVD of the centred training rows, with pca_scores' sign rule."""
    train = x[train_rows].astype(np.float64)
    mean = train.mean(0)
    u, s, vt = np.linalg.svd(train - mean, full_matrices=False)
    train_scores, test_scores = u[:, :k] * s[:k], (x[test_rows] - mean) @ vt[:k].T
    signs = np.sign(train_scores[np.abs(train_scores).argmax(0), np.arange(k)])
    return train_scores * signs, test_scores * signs, s[:k] ** 2 / (len(train_rows) - 1), mean


def _features(rng, shape):
    """Features with a decaying spectrum (distinct eigenvalues: components defined up to sign)."""
    return (rng.normal(size=shape) @ np.diag(np.linspace(3, 0.1, shape[1]))).astype(np.float32)


def _split(rng, n_rows, n_test):
    test = np.sort(rng.choice(n_rows, n_test, replace=False))
    return np.setdiff1d(np.arange(n_rows), test), test


class _Reads:
    """An array that records the shape of every block read from it."""

    def __init__(self, x, chunks=None):
        self.x, self.shape, self.chunks, self.shapes = x, x.shape, chunks, []

    def __getitem__(self, key):
        out = self.x[key]
        self.shapes.append(out.shape)
        return out


@pytest.mark.parametrize("shape", [(60, 700), (700, 60)])
def test_streamed_pca_matches_svd_in_both_orientations(rng, tmp_path, shape):
    x = _features(rng, shape)
    ids = np.arange(shape[0]) * 3  # sorted 73k ids; the test images interleaved with the training ones
    train_rows, test_rows = _split(rng, shape[0], 12)
    k = 10
    with h5py.File(tmp_path / "f.h5", "w") as h5:  # chunks narrower than a block: each read once all the same
        h5.create_dataset("features", data=x, chunks=(16, 32))
        h5["nsd_ids"] = ids
        h5.attrs["shape"] = (x.shape[1],)
    pd.DataFrame({"nsd_id": np.r_[ids[train_rows], ids[test_rows], ids[test_rows]],
                  "split": ["train"] * len(train_rows) + ["test"] * 2 * len(test_rows)}).to_csv(
        tmp_path / "t.tsv", sep="\t", index=False)
    # a budget of a few columns (or rows) of the needed rows: several blocks in either orientation
    reduce_feature(tmp_path / "f.h5", tmp_path / "t.tsv", tmp_path / "out.h5", k, block_bytes=4 * 40 * min(shape))
    train, test, variance, mean = _reference(x, train_rows, test_rows, k)
    with h5py.File(tmp_path / "out.h5", "r") as h5:
        np.testing.assert_array_equal(h5["train_nsd_ids"][:], ids[train_rows])
        np.testing.assert_array_equal(h5["test_nsd_ids"][:], ids[test_rows])
        scale = np.abs(train).max()
        np.testing.assert_allclose(h5["train"][:], train, atol=1e-5 * scale)
        np.testing.assert_allclose(h5["test"][:], test, atol=1e-5 * scale)
        np.testing.assert_allclose(h5["mean"][:], mean, rtol=1e-5, atol=1e-6)
        total = x[train_rows].astype(np.float64).var(0, ddof=1).sum()
        np.testing.assert_allclose(h5["explained_variance_ratio"][:], variance / total, rtol=1e-5)
        assert h5["train"].dtype == h5["test"].dtype == np.float32 and h5.attrs["n_components"] == k


@pytest.mark.parametrize("shape", [(40, 300), (300, 40)])
def test_sign_rule_largest_train_score_positive(rng, shape):
    x = _features(rng, shape)
    train_rows, test_rows = _split(rng, shape[0], 5)
    pca = pca_scores(x, train_rows, test_rows, 10)
    assert np.all(pca.train[np.abs(pca.train).argmax(0), np.arange(10)] > 0)
    # the rule, not the eigensolver, fixes the sign: negated features give the same scores
    flipped = pca_scores(-x, train_rows, test_rows, 10)
    np.testing.assert_allclose(flipped.train, pca.train, atol=1e-4)
    np.testing.assert_allclose(flipped.test, pca.test, atol=1e-4)


@pytest.mark.parametrize("shape", [(50, 400), (400, 50)])
def test_scores_do_not_depend_on_the_block_size(rng, shape):
    """Blocks of 1, a few and all columns (rows): the same scores; no read wider (taller) than a block."""
    x = _features(rng, shape)
    train_rows, test_rows = _split(rng, shape[0], 10)
    n_needed, results = shape[0], []
    for columns in (1, 7, 64, shape[1]):
        data = _Reads(x)
        budget = 4 * columns * (n_needed if shape[0] <= shape[1] else shape[1])
        results.append(pca_scores(data, train_rows, test_rows, 12, block_bytes=budget))
        reads = np.array(data.shapes)
        if shape[0] <= shape[1]:  # column blocks of the needed rows
            assert reads[:, 1].max() == columns and len(reads) >= shape[1] // columns
        else:  # row blocks: each read within the budget's rows (sparse reads: at most 1/8 of it, or one row)
            assert reads[:, 1].max() == shape[1] and reads[:, 0].max() <= max(columns, 1)
    for other in results[1:]:
        for name in ("train", "test", "mean"):
            np.testing.assert_allclose(getattr(other, name), getattr(results[0], name), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(other.explained_variance, results[0].explained_variance, rtol=1e-10)


def test_column_blocks_are_whole_chunks(rng):
    x = _features(rng, (30, 200))
    data = _Reads(x, chunks=(8, 48))
    pca_scores(data, np.arange(25), np.arange(25, 30), 5, block_bytes=4 * 30 * 20)  # 20 columns: one chunk
    assert {shape[1] for shape in data.shapes} <= {48, 200 - 4 * 48}  # 4 whole chunks, then the rest
    assert max(shape[0] for shape in data.shapes) <= 30


def test_streamed_reader_memory_is_one_block(rng, tmp_path):
    """Peak Python/numpy memory of a streamed PCA from HDF5 stays far below the feature matrix."""
    x = _features(rng, (40, 200))
    x = np.tile(x, (1, 200))  # (40, 40,000): 6.4 MB float32
    with h5py.File(tmp_path / "f.h5", "w") as h5:
        h5.create_dataset("features", data=x, chunks=(8, 128))
    train_rows, test_rows = _split(rng, 40, 8)
    results = {}
    for budget in (1 << 16, 1 << 30):
        with h5py.File(tmp_path / "f.h5", "r") as h5:
            tracemalloc.start()
            results[budget] = pca_scores(h5["features"], train_rows, test_rows, 6, block_bytes=budget)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        if budget == 1 << 16:
            assert peak < x.nbytes / 8, peak
        else:
            assert peak > x.nbytes  # the check sees a whole-matrix block
    small, whole = results.values()
    np.testing.assert_allclose(small.train, whole.train, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(small.test, whole.test, rtol=1e-5, atol=1e-4)


def test_components_are_capped_by_rank(rng):
    x = rng.normal(size=(20, 50)).astype(np.float32)
    pca = pca_scores(x, np.arange(20), np.arange(0), 6400)
    assert pca.train.shape == (20, 19) and pca.test.shape == (0, 19) and len(pca.explained_variance) == 19


def test_reduce_feature_never_sees_test_images(rng, tmp_path):
    ids = np.arange(0, 60, 2)
    features = rng.normal(size=(len(ids), 30)).astype(np.float32)
    write_feature_file(tmp_path / "f.h5", features, ids)
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
    write_feature_file(tmp_path / "f.h5", features, ids)
    reduce_feature(tmp_path / "f.h5", tmp_path / "t.tsv", tmp_path / "out2.h5", n_components=8)
    with h5py.File(tmp_path / "out.h5", "r") as a, h5py.File(tmp_path / "out2.h5", "r") as b:
        np.testing.assert_array_equal(a["train"][:], b["train"][:])
        np.testing.assert_array_equal(a["mean"][:], b["mean"][:])
        assert not np.allclose(before, b["test"][:])


def test_missing_feature_rows_are_named(rng, tmp_path):
    write_feature_file(tmp_path / "f.h5", rng.normal(size=(3, 4)).astype(np.float32), [1, 2, 3])
    pd.DataFrame({"nsd_id": [1, 2, 3, 9], "split": ["train"] * 3 + ["test"]}).to_csv(tmp_path / "t.tsv", sep="\t")
    with pytest.raises(ValueError, match=r"no features for 73k ids \[9\]"):
        reduce_feature(tmp_path / "f.h5", tmp_path / "t.tsv", tmp_path / "o.h5", 2)
    assert not (tmp_path / "o.h5").exists()


def test_one_training_image_is_refused(rng):
    with pytest.raises(ValueError, match="at least 2 training samples, found 1"):
        pca_scores(rng.normal(size=(3, 4)).astype(np.float32), np.array([0]), np.array([1, 2]), 2)
