"""Voxel-wise encoding models on planted data: maps, banded ridge, best layer, ROI summaries."""

from __future__ import annotations

import csv

import h5py
import nibabel as nib
import numpy as np
import pytest

from brainldm.config import ConfigError
from brainldm.errors import IntermediateFileError
from brainldm.nsd.roi_betas import write_roi_betas
from brainldm.reduced import write_reduced_feature
from brainldm.encoding import (
    FEATURE_MAPS,
    EncodingInputError,
    banded_map_names,
    map_best_unet_layer,
    encode_banded,
    encode_feature,
    summarize_encoding_by_roi,
)

SHAPE = (24, 20, 10)  # X, Y, Z of the planted volume
AFFINE = np.array([[-2.0, 0, 0, 40], [0, 2.0, 0, -30], [0, 0, 2.0, -10], [0, 0, 0, 1]])
N_TRAIN_IMAGES, REPS, N_TEST, K = 200, 2, 60, 16
N_EARLY, N_VENTRAL, N_NOISE = 150, 150, 2000
SETTINGS = {"n_targets_batch": 1000, "banded_n_ratios": 5, "alphas": np.logspace(-1, 5, 13).tolist()}


def write_betas(path, train_ids, train, test_ids, test, voxel_index, roi="brain"):
    write_roi_betas(path, train, train_ids, test, test_ids, voxel_index, SHAPE, AFFINE, roi)


def write_features(path, train_ids, train, test_ids, test):
    write_reduced_feature(path, train.astype(np.float32), train_ids, test.astype(np.float32), test_ids)


def respond(rng, signal_images, train_rows, noise_sd):
    """Single-trial training responses and repetition-averaged test responses."""
    train_signal, test_signal = signal_images
    train = train_signal[train_rows] + noise_sd * rng.normal(size=(len(train_rows), train_signal.shape[1]))
    test = test_signal + noise_sd * rng.normal(size=test_signal.shape) / np.sqrt(3)
    return train, test


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Early voxels respond to X_z, ventral voxels to X_c, noise voxels to nothing."""
    rng = np.random.default_rng(1)
    out = tmp_path_factory.mktemp("planted")
    ids = rng.permutation(5000)[: N_TRAIN_IMAGES + N_TEST]
    train_ids, test_ids = np.sort(ids[:N_TRAIN_IMAGES]), np.sort(ids[N_TRAIN_IMAGES:])
    trial_ids = rng.permutation(np.repeat(train_ids, REPS))
    train_rows = np.searchsorted(train_ids, trial_ids)
    feats = {name: (rng.normal(size=(N_TRAIN_IMAGES, K)), rng.normal(size=(N_TEST, K))) for name in ("z", "c")}
    n_vox = N_EARLY + N_VENTRAL + N_NOISE
    signal_train = np.zeros((N_TRAIN_IMAGES, n_vox))
    signal_test = np.zeros((N_TEST, n_vox))
    for name, cols in (("z", slice(0, N_EARLY)), ("c", slice(N_EARLY, N_EARLY + N_VENTRAL))):
        w = rng.normal(size=(K, cols.stop - cols.start)) / np.sqrt(K)
        signal_train[:, cols], signal_test[:, cols] = feats[name][0] @ w, feats[name][1] @ w
    train, test = respond(rng, (signal_train, signal_test), train_rows, noise_sd=2.0)
    voxel_index = np.sort(rng.choice(int(np.prod(SHAPE)), n_vox, replace=False))
    role = rng.permutation(np.repeat([1, 5, 0], [N_EARLY, N_VENTRAL, N_NOISE]))  # streams label per voxel
    # generated columns are early, ventral, noise: place them on voxels with those labels
    columns = np.empty(n_vox, int)
    columns[np.flatnonzero(role == 1)] = np.arange(N_EARLY)
    columns[np.flatnonzero(role == 5)] = N_EARLY + np.arange(N_VENTRAL)
    columns[np.flatnonzero(role == 0)] = N_EARLY + N_VENTRAL + np.arange(N_NOISE)
    write_betas(out / "brain.h5", trial_ids, train[:, columns], test_ids, test[:, columns], voxel_index)
    for name, (tr, te) in feats.items():
        write_features(out / f"{name}.h5", train_ids, tr, test_ids, te)
    streams = np.full(SHAPE, -1, np.int16)
    streams.reshape(-1)[voxel_index] = role
    nib.save(nib.Nifti1Image(streams, AFFINE), out / "streams.nii.gz")
    return {"dir": out, "role": role, "voxel_index": voxel_index, "train_ids": train_ids, "test_ids": test_ids,
            "trial_ids": trial_ids, "feats": feats}


def run_feature(planted, name, settings=SETTINGS, folder=None):
    out = folder or planted["dir"] / "enc" / name
    maps = {m: out / f"{m}.nii.gz" for m in FEATURE_MAPS}
    encode_feature(planted["dir"] / "brain.h5", planted["dir"] / f"{name}.h5", planted["dir"] / "streams.nii.gz",
                   out / "result.h5", maps, settings, feature=name)
    return out / "result.h5", maps


@pytest.fixture(scope="module")
def encoded(planted):
    return {name: run_feature(planted, name) for name in ("z", "c")}


def read(path, name="r"):
    with h5py.File(path, "r") as h5:
        return h5[name][()]


def test_planted_voxels_are_found_and_noise_stays_at_the_fdr_rate(planted, encoded):
    role = planted["role"]
    early, ventral, noise = role == 1, role == 5, role == 0
    r = {name: read(encoded[name][0]) for name in encoded}
    sig = {name: read(encoded[name][0], "significant").astype(bool) for name in encoded}
    assert sig["z"][early].mean() > 0.8, sig["z"][early].mean()
    assert sig["c"][ventral].mean() > 0.8, sig["c"][ventral].mean()
    assert np.median(r["z"][early]) > np.median(r["c"][early]) + 0.3
    assert np.median(r["c"][ventral]) > np.median(r["z"][ventral]) + 0.3
    assert (r["z"][early] > r["c"][early]).mean() > 0.9
    assert (r["c"][ventral] > r["z"][ventral]).mean() > 0.9
    for name in encoded:
        # 2000 pure-noise voxels: BH keeps their significant fraction at or below q
        assert sig[name][noise].mean() <= 0.05, (name, sig[name][noise].mean())
        # the raw p of null voxels is uniform: about 5% below 0.05 (binomial sd 0.5%)
        p = read(encoded[name][0], "p")[noise]
        assert 0.03 < (p < 0.05).mean() < 0.07


def test_maps_hold_the_vectors_on_the_reference_grid(planted, encoded):
    path, maps = encoded["z"]
    index = planted["voxel_index"]
    reference = nib.load(planted["dir"] / "streams.nii.gz")
    outside = np.ones(int(np.prod(SHAPE)), bool)
    outside[index] = False
    for name, fill in (("r", 0), ("p", 1), ("q", 1), ("significant", 0), ("alpha", 0)):
        image = nib.load(maps[name])
        np.testing.assert_array_equal(image.affine, reference.affine)
        assert image.shape == SHAPE
        data = np.asarray(image.dataobj)
        key = {"alpha": "best_alpha"}.get(name, name)
        np.testing.assert_allclose(data.reshape(-1)[index], read(path, key).astype(data.dtype), rtol=1e-6)
        assert np.all(data.reshape(-1)[outside] == fill)
    assert nib.load(maps["significant"]).get_data_dtype() == np.uint8
    assert nib.load(maps["r"]).get_data_dtype() == np.float32
    with h5py.File(path, "r") as h5:
        assert h5.attrs["n_test"] == N_TEST and h5.attrs["feature"] == "z"
        alphas = np.asarray(SETTINGS["alphas"])
        best = h5["best_alpha"][()]
        assert np.isclose(best[:, None], alphas[None], rtol=1e-5).any(axis=1).all()  # a grid value (float32)


def test_batches_do_not_change_the_results(planted, encoded):
    small = run_feature(planted, "z", dict(SETTINGS, n_targets_batch=700), planted["dir"] / "enc" / "z_small")[0]
    np.testing.assert_allclose(read(small), read(encoded["z"][0]), atol=1e-4)
    np.testing.assert_array_equal(read(small, "best_alpha"), read(encoded["z"][0], "best_alpha"))


def test_image_without_feature_row_is_named(planted, tmp_path):
    feats = planted["feats"]["z"]
    dropped = planted["train_ids"][5]
    keep = planted["train_ids"] != dropped
    bad = tmp_path / "z_missing.h5"
    write_features(bad, planted["train_ids"][keep], feats[0][keep], planted["test_ids"], feats[1])
    maps = {m: tmp_path / f"{m}.nii.gz" for m in FEATURE_MAPS}
    with pytest.raises(EncodingInputError, match=rf"z_missing\.h5: no training feature row for 73k image ids \[{dropped}\]"):
        encode_feature(planted["dir"] / "brain.h5", bad, planted["dir"] / "streams.nii.gz", tmp_path / "r.h5", maps, SETTINGS)
    assert not list(tmp_path.glob("*.nii.gz")) and not (tmp_path / "r.h5").exists()


def test_empty_mask_is_an_error(planted, tmp_path):
    betas = tmp_path / "empty.h5"
    n_trials = len(planted["trial_ids"])
    write_betas(betas, planted["trial_ids"], np.zeros((n_trials, 0)), planted["test_ids"], np.zeros((N_TEST, 0)),
                np.zeros(0, np.int64), roi="nowhere")
    maps = {m: tmp_path / f"{m}.nii.gz" for m in FEATURE_MAPS}
    with pytest.raises(IntermediateFileError, match=r"empty\.h5: the ROI mask 'nowhere' selects no voxel"):
        encode_feature(betas, planted["dir"] / "z.h5", planted["dir"] / "streams.nii.gz", tmp_path / "r.h5", maps, SETTINGS)


def test_settings_are_checked_before_any_fit(planted, tmp_path):
    maps = {key: tmp_path / f"{key}.nii.gz" for key in FEATURE_MAPS}
    for bad, message in (({"alpha": [1]}, r"'encoding\.alpha' is not known"),
                         ({"fdr_q": 1.5}, r"'encoding\.fdr_q'"),
                         ({"alphas": [0, 1]}, r"'encoding\.alphas\[0\]'")):
        with pytest.raises(ConfigError, match=message):
            encode_feature(planted["dir"] / "brain.h5", planted["dir"] / "z.h5", planted["dir"] / "streams.nii.gz",
                           tmp_path / "r.h5", maps, {**SETTINGS, **bad})
    assert not (tmp_path / "r.h5").exists()


@pytest.fixture(scope="module")
def banded(tmp_path_factory):
    """z and zc share half their dimensions; 'z' voxels follow z's own half, 'new' voxels zc's own half,
    'shared' voxels the half both carry, 'noise' voxels nothing."""
    rng = np.random.default_rng(2)
    out = tmp_path_factory.mktemp("banded")
    n_img, n_test, h, n_each, n_noise = 200, 60, 6, 60, 200
    train_ids, test_ids = np.arange(n_img), np.arange(n_img, n_img + n_test)
    trial_ids = rng.permutation(np.repeat(train_ids, 2))
    rows = np.searchsorted(train_ids, trial_ids)
    shared, own_z, own_zc = (rng.normal(size=(n_img + n_test, h)) for _ in range(3))
    z, zc = np.hstack([shared, own_z]), np.hstack([shared, own_zc])
    weights = [rng.normal(size=(h, n_each)) / np.sqrt(h) for _ in range(3)]
    signal = np.hstack([own_z @ weights[0], own_zc @ weights[1], shared @ weights[2],
                        np.zeros((n_img + n_test, n_noise))])
    train, test = respond(rng, (signal[:n_img], signal[n_img:]), rows, noise_sd=1.5)
    n_vox = signal.shape[1]
    index = np.arange(n_vox) * 3
    write_betas(out / "brain.h5", trial_ids, train, test_ids, test, index)
    write_features(out / "z.h5", train_ids, z[:n_img], test_ids, z[n_img:])
    write_features(out / "zc.h5", train_ids, zc[:n_img], test_ids, zc[n_img:])
    streams = np.full(SHAPE, -1, np.int16)
    streams.reshape(-1)[index] = np.repeat([1, 5, 2, 0], [n_each, n_each, n_each, n_noise])
    nib.save(nib.Nifti1Image(streams, AFFINE), out / "streams.nii.gz")
    maps = {m: out / "maps" / f"{m}.nii.gz" for m in banded_map_names(["z", "zc"])}
    encode_banded(out / "brain.h5", {"z": out / "z.h5", "zc": out / "zc.h5"}, out / "streams.nii.gz",
                  out / "banded.h5", maps, SETTINGS)
    groups = {"z": slice(0, n_each), "new": slice(n_each, 2 * n_each), "shared": slice(2 * n_each, 3 * n_each),
              "noise": slice(3 * n_each, n_vox)}
    return {"dir": out, "maps": maps, "groups": groups, "index": index}


def test_banded_unique_variance_follows_the_planted_band(banded):
    g = banded["groups"]
    h5 = h5py.File(banded["dir"] / "banded.h5", "r")
    unique_z, unique_zc = h5["unique/z"][()], h5["unique/zc"][()]
    sig = h5["significant"][()].astype(bool)
    # voxels driven by what only zc carries: zc's unique variance is positive and beats z's
    assert sig[g["new"]].mean() > 0.8
    assert np.median(unique_zc[g["new"]]) > 0.1 and np.median(unique_z[g["new"]]) < 0.05
    assert (unique_zc[g["new"]] > unique_z[g["new"]]).mean() > 0.9
    # and the other way round for voxels driven by z's own half
    assert np.median(unique_z[g["z"]]) > 0.1 and np.median(unique_zc[g["z"]]) < 0.05
    assert (unique_z[g["z"]] > unique_zc[g["z"]]).mean() > 0.9
    # voxels driven by what both carry: well predicted, little unique variance for either band
    assert sig[g["shared"]].mean() > 0.8
    assert np.median(unique_z[g["shared"]]) < 0.05 and np.median(unique_zc[g["shared"]]) < 0.05
    # ... whereas the split scores share that variance out between the bands (why unique = joint - other)
    split_z, split_zc = h5["split/z"][()], h5["split/zc"][()]
    assert np.median((split_z + split_zc)[g["shared"]]) > 0.2
    # split scores follow the same pattern where one band carries the signal alone
    assert np.median(split_zc[g["new"]]) > np.median(split_z[g["new"]])
    assert sig[g["noise"]].mean() <= 0.05
    # maps: unique variance thresholded by the joint model's FDR
    data = np.asarray(nib.load(banded["maps"]["unique_zc"]).dataobj).reshape(-1)[banded["index"]]
    np.testing.assert_allclose(data, np.where(sig, unique_zc, 0), rtol=1e-6, atol=1e-7)
    assert h5.attrs["model"] == "banded"
    h5.close()


def test_banded_results_do_not_depend_on_batching(banded, tmp_path):
    d = banded["dir"]
    maps = {m: tmp_path / f"{m}.nii.gz" for m in banded_map_names(["z", "zc"])}
    encode_banded(d / "brain.h5", {"z": d / "z.h5", "zc": d / "zc.h5"}, d / "streams.nii.gz", tmp_path / "b.h5",
                  maps, dict(SETTINGS, n_targets_batch=128))
    for name in ("r", "unique/z", "split/zc", "best_alpha"):
        np.testing.assert_allclose(read(tmp_path / "b.h5", name), read(d / "banded.h5", name), rtol=1e-3, atol=1e-4)


def test_best_layer_map_and_roi_summary(planted, encoded, tmp_path):
    role, index = planted["role"], planted["voxel_index"]
    paths = [encoded["z"][0], encoded["c"][0]]
    map_best_unet_layer(paths, planted["dir"] / "streams.nii.gz", tmp_path / "best.nii.gz", tmp_path / "best.tsv",
                   SETTINGS, labels=["zblock", "cblock"])
    image = nib.load(tmp_path / "best.nii.gz")
    assert image.get_data_dtype() == np.uint8
    label = np.asarray(image.dataobj).reshape(-1)[index]
    assert (label[role == 1] == 1).mean() > 0.8 and (label[role == 5] == 2).mean() > 0.8
    assert (label[role == 0] == 0).mean() > 0.95
    table = list(csv.DictReader(open(tmp_path / "best.tsv"), delimiter="\t"))
    assert [row["name"] for row in table] == ["not significant", "zblock", "cblock"]
    assert sum(int(row["n_voxels"]) for row in table) == len(index)

    summarize_encoding_by_roi(paths, planted["dir"] / "streams.nii.gz", tmp_path / "rois.tsv")
    rows = {(row["model"], row["roi"]): row for row in csv.DictReader(open(tmp_path / "rois.tsv"), delimiter="\t")}
    assert float(rows[("z", "early")]["fraction_significant"]) > 0.8
    assert float(rows[("z", "early")]["mean_r"]) > float(rows[("c", "early")]["mean_r"])
    assert float(rows[("c", "ventral")]["mean_r"]) > float(rows[("z", "ventral")]["mean_r"])
    assert float(rows[("c", "unlabelled")]["fraction_significant"]) <= 0.05
    assert int(rows[("z", "all")]["n_voxels"]) == len(index)


def test_unet_labels_are_parsed_from_feature_names(planted, encoded, tmp_path):
    copies = []
    for k, block in enumerate(["down_blocks.1", "mid_block"]):
        path = tmp_path / f"{block}.h5"
        with h5py.File(encoded["z"][0], "r") as src, h5py.File(path, "w") as dst:
            for name in ("r", "significant", "voxel_index"):
                dst[name] = src[name][()] + (0.01 * k if name == "r" else 0)
            dst.attrs["feature"] = f"unet_{block}_t0.66"
        copies.append(path)
    map_best_unet_layer(copies, planted["dir"] / "streams.nii.gz", tmp_path / "b.nii.gz", tmp_path / "b.tsv")
    table = list(csv.DictReader(open(tmp_path / "b.tsv"), delimiter="\t"))
    assert [row["name"] for row in table[1:]] == ["down_blocks.1", "mid_block"]
    assert int(table[1]["n_voxels"]) == 0  # the second block has higher r everywhere


# --------------------------------------------------------------------------- the ridge engine over voxel batches

N_BATCH = 37  # voxels per batch: 170 voxels are 5 batches, the last one partial


@pytest.fixture(scope="module")
def many_batches(tmp_path_factory):
    """A design as :func:`load_design` makes it (centred, one common scale: a decaying PCA spectrum) and
    170 voxels, betas in HDF5: planted voxels of different noise levels (so their alphas differ), noise voxels."""
    from brainldm.ridge import Standardizer

    rng = np.random.default_rng(3)
    n_train, n_test, k, n_vox = 240, 50, 24, 170
    x = rng.normal(size=(n_train + n_test, k)) * np.geomspace(5, 0.1, k) + rng.normal(size=k) * 2
    scaler = Standardizer.fit_common_scale(x[:n_train])
    x_train, x_test = scaler.transform(x[:n_train]), scaler.transform(x[n_train:])
    signal = np.vstack([x_train, x_test]) @ rng.normal(size=(k, n_vox))
    signal[:, 150:] = 0  # noise voxels
    noise_sd = signal[:n_train].std(0).clip(1) * np.geomspace(0.1, 5, n_vox)[rng.permutation(n_vox)]
    y = signal + rng.normal(size=signal.shape) * noise_sd + rng.normal(size=n_vox) * 10
    path = tmp_path_factory.mktemp("batches") / "betas.h5"
    with h5py.File(path, "w") as h5:
        h5["train"], h5["test"] = y[:n_train].astype(np.float32), y[n_train:].astype(np.float32)
    return {"x_train": x_train, "x_test": x_test, "betas": path}


def himalaya_per_batch(x_train, y_train, x_test, alphas, cv, batch):
    """Reference: the old encoding, one himalaya RidgeCV per voxel batch on X as given (it re-decomposes X
    for every batch). Test predictions, best alphas and CV scores of all voxels."""
    from himalaya.backend import set_backend
    from himalaya.ridge import RidgeCV

    backend = set_backend("numpy")
    out = []
    for start in range(0, y_train.shape[1], batch):
        model = RidgeCV(alphas=np.asarray(alphas), cv=cv, fit_intercept=True,
                        solver_params={"local_alpha": True, "warn": False})
        model.fit(x_train, y_train[:, start:start + batch])
        out.append((backend.to_numpy(model.predict(x_test)), backend.to_numpy(model.best_alphas_),
                    backend.to_numpy(model.cv_scores_).reshape(-1)))
    return tuple(np.concatenate(parts, axis=-1) for parts in zip(*out))


def test_engine_over_voxel_batches_gives_himalaya_ridgecv_per_batch(many_batches):
    from brainldm.encoding import ridge_encoding
    from brainldm.stats import pearson_r, r2_score

    x_train, x_test = many_batches["x_train"], many_batches["x_test"]
    settings = dict(SETTINGS, n_targets_batch=N_BATCH, backend="numpy")
    with h5py.File(many_batches["betas"], "r") as h5:
        result = ridge_encoding(x_train, h5["train"], x_test, h5["test"], settings)
        y_train, y_test = h5["train"][()], h5["test"][()]
    prediction, best, cv_score = himalaya_per_batch(x_train, y_train, x_test, SETTINGS["alphas"], 5, N_BATCH)
    assert len(np.unique(best)) > 3  # the voxels do need different alphas
    np.testing.assert_allclose(result.best_alpha, best, rtol=1e-5)
    np.testing.assert_allclose(result.cv_score, cv_score, rtol=1e-4)
    np.testing.assert_allclose(result.stats.r, pearson_r(prediction, y_test), atol=1e-4)
    np.testing.assert_allclose(result.r2, r2_score(prediction, y_test), atol=1e-4)
    assert np.median(result.stats.r[:150]) > 0.5 and result.stats.significant[:150].mean() > 0.8
    assert result.backend == "numpy"


@pytest.mark.parametrize("cv", [5, 3])
def test_folds_are_diagonalised_once_per_job_whatever_the_batches(many_batches, monkeypatch, cv):
    from brainldm import ridge
    from brainldm.encoding import ridge_encoding

    calls = []
    eigh = ridge._eigh

    def counted(*args, **kwargs):
        calls.append(args[1].shape)
        return eigh(*args, **kwargs)

    monkeypatch.setattr(ridge, "_eigh", counted)
    with h5py.File(many_batches["betas"], "r") as h5:
        counts = {}
        for batch in (N_BATCH, 1000):  # 5 batches, 1 batch
            calls.clear()
            ridge_encoding(many_batches["x_train"], h5["train"], many_batches["x_test"], h5["test"],
                           dict(SETTINGS, n_targets_batch=batch, cv=cv, backend="numpy"))
            counts[batch] = len(calls)
    assert counts == {N_BATCH: cv + 1, 1000: cv + 1}  # each fold's training rows, and all rows


def test_non_finite_betas_are_named_by_their_batch(many_batches):
    from brainldm.encoding import ridge_encoding

    with h5py.File(many_batches["betas"], "r") as h5:
        y_train, y_test = h5["train"][()], h5["test"][()]
    y_train[7, 80] = np.nan
    with pytest.raises(ValueError, match=r"train betas \(voxels 74-111\): 1 NaN or infinite values \(rows \[7\]\)"):
        ridge_encoding(many_batches["x_train"], y_train, many_batches["x_test"], y_test,
                       dict(SETTINGS, n_targets_batch=N_BATCH, backend="numpy"))


def himalaya_banded(xs_train, y_train, xs_test, weights, alphas, cv):
    """Reference: himalaya's BandedRidgeCV over the same band weights, with an intercept; each band's part of
    the test prediction from its refit coefficients."""
    from himalaya.backend import set_backend
    from himalaya.ridge import BandedRidgeCV

    backend = set_backend("numpy")
    model = BandedRidgeCV(groups="input", solver="random_search", fit_intercept=True, cv=cv, solver_params={
        "n_iter": weights, "alphas": np.asarray(alphas), "local_alpha": True, "progress_bar": False, "warn": False})
    model.fit([x.astype(np.float32) for x in xs_train], y_train)
    coef = backend.to_numpy(model.coef_)
    width = xs_train[0].shape[1]
    means = [x.mean(0) for x in xs_train]
    parts = np.stack([(xs_test[0] - means[0]) @ coef[:width], (xs_test[1] - means[1]) @ coef[width:]])
    prediction = backend.to_numpy(model.predict([x.astype(np.float32) for x in xs_test]))
    return prediction, parts, backend.to_numpy(model.best_alphas_), backend.to_numpy(model.deltas_)


def test_banded_engine_gives_himalaya_banded_ridgecv(many_batches):
    """One decomposition per band weight and fold for all voxel batches: himalaya's per-voxel choice of weight and
    alpha, its joint predictions and split parts (the reference fits all voxels at once)."""
    from himalaya.scoring import r2_score_split

    from brainldm.encoding import band_weights, banded_encoding
    from brainldm.stats import pearson_r, r2_score

    x_train, x_test = many_batches["x_train"], many_batches["x_test"]
    xs_train, xs_test = [x_train[:, :10], x_train[:, 10:]], [x_test[:, :10], x_test[:, 10:]]
    settings = dict(SETTINGS, n_targets_batch=N_BATCH, backend="numpy", banded_n_ratios=5, banded_max_ratio=100)
    with h5py.File(many_batches["betas"], "r") as h5:
        result = banded_encoding(xs_train, h5["train"], xs_test, h5["test"], ["a", "b"], settings)
        y_train, y_test = h5["train"][()], h5["test"][()]
    prediction, parts, alphas, deltas = himalaya_banded(xs_train, y_train, xs_test, band_weights(5, 100),
                                                        SETTINGS["alphas"], 5)
    chosen = np.argmax(deltas - np.log(1 / alphas), axis=0)  # the band that got the larger weight
    assert len(np.unique(alphas)) > 3 and len(np.unique(np.round(deltas[0] + np.log(alphas), 3))) > 2
    same = np.isclose(result.deltas, deltas, rtol=1e-4, atol=1e-4).all(0)
    assert same.mean() > 0.97, f"weight and alpha differ from himalaya's for {(~same).sum()} voxels"
    assert len(np.unique(chosen)) == 2
    np.testing.assert_allclose(result.best_alpha[same], alphas[same], rtol=1e-5)
    np.testing.assert_allclose(result.stats.r[same], pearson_r(prediction, y_test)[same], atol=1e-4)
    np.testing.assert_allclose(result.r2_joint[same], r2_score(prediction, y_test)[same], atol=1e-4)
    parts -= parts.mean(axis=1, keepdims=True)
    split = r2_score_split(y_test - y_test.mean(0, dtype=np.float64), parts)
    np.testing.assert_allclose(result.split_r2[:, same], np.asarray(split)[:, same], atol=1e-4)
    assert np.median(result.stats.r[:150]) > 0.5


def test_banded_model_diagonalises_each_weight_once_per_job(many_batches, monkeypatch):
    from brainldm import ridge
    from brainldm.encoding import banded_encoding

    calls = []
    eigh = ridge._eigh
    monkeypatch.setattr(ridge, "_eigh", lambda *args, **kwargs: calls.append(1) or eigh(*args, **kwargs))
    x_train, x_test = many_batches["x_train"], many_batches["x_test"]
    alone = [{"r": np.zeros(170), "r2": np.zeros(170)}] * 2
    with h5py.File(many_batches["betas"], "r") as h5:
        banded_encoding([x_train[:, :10], x_train[:, 10:]], h5["train"], [x_test[:, :10], x_test[:, 10:]],
                        h5["test"], ["a", "b"], dict(SETTINGS, n_targets_batch=N_BATCH, banded_n_ratios=3), alone)
    assert len(calls) == 3 * (5 + 1)  # per weight: each fold's training rows and all rows, for 5 voxel batches
