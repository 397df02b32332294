"""Decoders: file-level behaviour on a planted problem, and recovery of z and c on the synthetic run."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from brainldm.decoding import decode_latent
from brainldm.errors import IntermediateFileError
from brainldm.feature_file import write_feature_file
from brainldm.nsd.roi_betas import write_roi_betas

DECODING = {"alphas": list(np.logspace(-1, 5, 13)), "cv": 5, "backend": "numpy", "n_targets_batch": 7}


def _write_problem(tmp_path, rng, n_voxels=30, test_rows=True):
    """Betas that are a noisy linear function of features, as the ingestion and features stages write them."""
    ids = np.arange(0, 400, 2)
    features = rng.normal(size=(len(ids), 20)).astype(np.float32)
    mixing = rng.normal(size=(20, n_voxels))
    train_ids, test_ids = ids[40:], ids[:40]
    trial_ids = np.repeat(train_ids, 2)
    rows = np.searchsorted(ids, trial_ids)
    write_roi_betas(tmp_path / "betas.h5", features[rows] @ mixing + rng.normal(size=(len(rows), n_voxels)) * 3,
                    trial_ids, features[:40] @ mixing + rng.normal(size=(40, n_voxels)),
                    test_ids if test_rows else test_ids + 1, np.arange(n_voxels), (10, 10, 10), np.eye(4), "early")
    write_feature_file(tmp_path / "feature.h5", features, ids, shape=(4, 5))
    return features[:40]


def test_decode_writes_predictions_alphas_and_correlations(tmp_path, rng):
    truth = _write_problem(tmp_path, rng)
    decode_latent(tmp_path / "betas.h5", tmp_path / "feature.h5", tmp_path / "out.h5", DECODING, "subj01", "early", "z")
    with h5py.File(tmp_path / "out.h5", "r") as h5:
        predictions = h5["predictions"][()]
        assert predictions.shape == truth.shape
        assert tuple(h5.attrs["shape"]) == (4, 5)
        assert h5["best_alphas"].shape == (20,) and h5["alpha_at_edge"].dtype == bool
        assert np.median(h5["corr_per_dimension"][()]) > 0.8
        assert np.median(h5["corr_per_image"][()]) > 0.8
        np.testing.assert_array_equal(h5["nsd_ids"][()], np.arange(0, 80, 2))


def test_ids_without_features_are_named(tmp_path, rng):
    _write_problem(tmp_path, rng, test_rows=False)
    with pytest.raises(ValueError, match=r"feature.h5: no features for 73k ids \[1, 3"):
        decode_latent(tmp_path / "betas.h5", tmp_path / "feature.h5", tmp_path / "out.h5", DECODING, "subj01", "early", "z")
    assert not (tmp_path / "out.h5").exists()


def test_roi_without_voxels(tmp_path, rng):
    _write_problem(tmp_path, rng, n_voxels=0)
    with pytest.raises(IntermediateFileError, match="betas.h5: the ROI mask 'early' selects no voxel"):
        decode_latent(tmp_path / "betas.h5", tmp_path / "feature.h5", tmp_path / "out.h5", DECODING, "subj01", "early", "z")


def _matched_vs_shuffled(predictions, truth, rng, n_shuffles=500):
    """Mean correlation of each prediction with its own image, and with shuffled images.

    The mean over test images is removed from every dimension first, so the shared
    structure of all latents (e.g. c's padding tokens) does not count as decoding.
    """
    p = predictions - predictions.mean(0)
    t = truth - truth.mean(0)
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    similarity = p @ t.T
    matched = np.diag(similarity).mean()
    null = np.array([similarity[np.arange(len(p)), rng.permutation(len(p))].mean() for _ in range(n_shuffles)])
    return matched, null


@pytest.mark.workflow
@pytest.mark.parametrize("target", ["z", "c"])
def test_decoded_latents_beat_a_shuffled_null(workflow_run, small_config, target, rng):
    """On the synthetic data, decoded z and c match their own test images far above chance."""
    with h5py.File(workflow_run / "results" / "features" / f"{target}.h5", "r") as h5:
        feature_ids, features = h5["nsd_ids"][()], h5["features"][()]
    for subject in small_config["subjects"]:
        with h5py.File(workflow_run / "results" / subject / "decoding" / f"{target}.h5", "r") as h5:
            predictions, ids = h5["predictions"][()], h5["nsd_ids"][()]
        truth = features[np.searchsorted(feature_ids, ids)]
        matched, null = _matched_vs_shuffled(predictions, truth, rng)
        margin = (matched - null.mean()) / null.std()
        # z from 64 px images is the harder target (matched ~0.15 here, ~0.6 for c); the null is ~0 +- 0.02
        assert matched > 0.1 and margin > 5, (subject, target, matched, null.mean(), null.std())
