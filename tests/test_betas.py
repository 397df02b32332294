"""Streamed ROI betas: exact values, voxel order, formats, and clear errors on bad input."""

from __future__ import annotations

import os
import shutil

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainldm.nsd import layout
from brainldm.nsd.betas import BETAS_SCALE, BetasFile, read_session, sessions_on_disk, zscore_columns
from brainldm.nsd.design import NSDInputError
from brainldm.nsd.ingest import write_roi_betas, write_split


@pytest.fixture(scope="module")
def extracted(synthetic_tree, small_config, tmp_path_factory):
    """Trials and ROI betas of the first subject, from HDF5 and from NIfTI."""
    out = tmp_path_factory.mktemp("betas")
    subjects = small_config["subjects"]
    trials = {s: out / f"{s}_trials.tsv" for s in subjects}
    write_split(synthetic_tree["root"], subjects, small_config["ingestion"], trials, out / "test.tsv")
    subject = subjects[0]
    paths = {}
    for fmt in ("hdf5", "nii.gz"):
        ingestion = {**small_config["ingestion"], "betas_format": fmt}
        paths[fmt] = {roi: out / fmt / f"{roi}.h5" for roi in small_config["rois"]}
        write_roi_betas(synthetic_tree["root"], subject, trials[subject], ingestion, small_config["rois"], paths[fmt])
    return {"subject": subject, "trials": pd.read_csv(trials[subject], sep="\t"), "paths": paths,
            "trials_path": trials[subject], "root": synthetic_tree["root"]}


def _naive_session(root, subject, session, voxel_index):
    """Whole session read with h5py, masked afterwards: the reference."""
    with h5py.File(layout.betas(root, subject, session, "hdf5"), "r") as h5:
        volume = h5["betas"][()].transpose(0, 3, 2, 1)
    return volume.reshape(len(volume), -1)[:, voxel_index] / BETAS_SCALE


def test_train_rows_and_test_means_are_exact(extracted, small_config):
    root, subject, trials = extracted["root"], extracted["subject"], extracted["trials"]
    with h5py.File(extracted["paths"]["hdf5"]["early"], "r") as h5:
        voxel_index = h5["voxel_index"][:]
        train, test = h5["train/betas"][:], h5["test/betas"][:]
        test_ids, n_reps = h5["test/nsd_ids"][:], h5["test/n_repetitions"][:]
        np.testing.assert_array_equal(h5["train/nsd_ids"][:], trials.loc[trials["split"] == "train", "nsd_id"])
    rows, labels = [], []
    for session, group in trials.groupby("session"):
        x = _naive_session(root, subject, session, voxel_index)
        sd = x.std(0)
        x = np.divide(x - x.mean(0), sd, out=np.zeros_like(x), where=sd > 0)
        rows.append(x[group["trial_in_session"]])
        labels.append(group)
    reference = np.concatenate(rows)
    labels = pd.concat(labels)
    is_train = (labels["split"] == "train").to_numpy()
    np.testing.assert_allclose(train, reference[is_train], atol=1e-5)
    for row, nsd_id in enumerate(test_ids):  # each test row is the mean of exactly its repetitions
        reps = (labels["nsd_id"] == nsd_id).to_numpy()
        assert reps.sum() == n_reps[row] >= 1
        np.testing.assert_allclose(test[row], reference[reps].mean(0), atol=1e-5)
    assert set(test_ids) == set(labels.loc[~is_train, "nsd_id"])


def test_hdf5_and_nifti_give_identical_matrices(extracted, small_config):
    for roi in small_config["rois"]:
        with h5py.File(extracted["paths"]["hdf5"][roi], "r") as a, h5py.File(extracted["paths"]["nii.gz"][roi], "r") as b:
            for key in ("train/betas", "test/betas", "voxel_index", "test/nsd_ids"):
                np.testing.assert_array_equal(a[key][()], b[key][()])


def test_voxel_order_round_trips_into_the_volume(extracted, small_config):
    root, subject = extracted["root"], extracted["subject"]
    for roi, definition in small_config["rois"].items():
        with h5py.File(extracted["paths"]["hdf5"][roi], "r") as h5:
            voxel_index, shape = h5["voxel_index"][:], tuple(h5.attrs["volume_shape"])
            affine = h5["affine"][:]
        reference = nib.load(layout.brainmask(root, subject) if definition["file"] == "brainmask"
                             else layout.roi(root, subject, definition["file"]))
        volume = np.zeros(shape, bool)
        volume.ravel()[voxel_index] = True
        np.testing.assert_array_equal(volume, np.isin(np.asarray(reference.dataobj), definition["labels"]))
        np.testing.assert_allclose(affine, reference.affine)
    # raw values of one trial land on the right voxels
    with h5py.File(extracted["paths"]["hdf5"]["brain"], "r") as h5:
        voxel_index = h5["voxel_index"][:]
    raw = read_session(layout.betas(root, subject, 1, "nii.gz"), voxel_index, shape)
    image = np.asarray(nib.load(layout.betas(root, subject, 1, "nii.gz")).dataobj)[..., 4] / BETAS_SCALE
    np.testing.assert_allclose(raw[4], image.ravel()[voxel_index], rtol=1e-6)


def test_dead_and_constant_voxels_are_finite(extracted, synthetic_tree):
    with h5py.File(extracted["paths"]["hdf5"]["brain"], "r") as h5:
        train, test = h5["train/betas"][:], h5["test/betas"][:]
    assert np.isfinite(train).all() and np.isfinite(test).all()
    with h5py.File(synthetic_tree["truth"] / f"{extracted['subject']}.h5", "r") as truth:
        dead = truth["role"][:] == 4
    assert dead.any() and np.all(train[:, dead] == 0)
    x = np.ones((5, 3), np.float32)
    assert np.all(zscore_columns(x) == 0)


def test_small_blocks_read_the_same_values(extracted):
    root, subject = extracted["root"], extracted["subject"]
    with h5py.File(extracted["paths"]["hdf5"]["early"], "r") as h5:
        voxel_index, shape = h5["voxel_index"][:], tuple(h5.attrs["volume_shape"])
    for fmt in ("hdf5", "nii.gz"):
        path = layout.betas(root, subject, 2, fmt)
        np.testing.assert_array_equal(read_session(path, voxel_index, shape, block_bytes=1),
                                      read_session(path, voxel_index, shape))
    np.testing.assert_allclose(read_session(layout.betas(root, subject, 2, "hdf5"), voxel_index, shape),
                               _naive_session(root, subject, 2, voxel_index), rtol=1e-6)


def test_auto_format_prefers_hdf5_and_falls_back(extracted, tmp_path):
    betas_dir = layout.betas_dir(extracted["root"], extracted["subject"])
    found = sessions_on_disk(betas_dir)
    assert all(p.endswith(".hdf5") for p in found.values()) and len(found) > 1
    (tmp_path / "betas_session01.nii.gz").touch()
    assert sessions_on_disk(tmp_path) == {1: str(tmp_path / "betas_session01.nii.gz")}


@pytest.fixture
def tree_copy(synthetic_tree, tmp_path):
    root = tmp_path / "nsd"
    shutil.copytree(synthetic_tree["root"], root)
    return root


def _run(root, extracted, small_config, tmp_path, **ingestion):
    out = {roi: tmp_path / "out" / f"{roi}.h5" for roi in small_config["rois"]}
    write_roi_betas(root, extracted["subject"], extracted["trials_path"], {**small_config["ingestion"], **ingestion},
                    small_config["rois"], out)
    return out


def _assert_no_output(tmp_path):
    leftovers = list((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else []
    assert leftovers == []


def test_missing_session_file_stops_with_its_name(tree_copy, extracted, small_config, tmp_path):
    betas_dir = layout.betas_dir(tree_copy, extracted["subject"])
    for fmt in ("hdf5", "nii.gz"):
        os.remove(layout.betas(tree_copy, extracted["subject"], 3, fmt))
    with pytest.raises(NSDInputError, match=rf"{betas_dir}: betas missing for sessions \[3\]"):
        _run(tree_copy, extracted, small_config, tmp_path)
    _assert_no_output(tmp_path)
    # with missing_sessions: skip, the session is left out of the split and of the matrices
    ingestion = {**small_config["ingestion"], "missing_sessions": "skip"}
    trials = {s: tmp_path / f"{s}.tsv" for s in small_config["subjects"]}
    write_split(tree_copy, small_config["subjects"], ingestion, trials, tmp_path / "test.tsv")
    table = pd.read_csv(trials[extracted["subject"]], sep="\t")
    assert 3 not in set(table["session"]) and len(table) < len(extracted["trials"])
    out = {roi: tmp_path / "skip" / f"{roi}.h5" for roi in small_config["rois"]}
    write_roi_betas(tree_copy, extracted["subject"], trials[extracted["subject"]], ingestion, small_config["rois"], out)
    with h5py.File(out["early"], "r") as h5:
        assert len(h5["train/betas"]) == (table["split"] == "train").sum()
        assert 3 not in set(h5["train/session"][:])


def test_missing_roi_file(tree_copy, extracted, small_config, tmp_path):
    path = layout.roi(tree_copy, extracted["subject"], "streams")
    os.remove(path)
    with pytest.raises(NSDInputError, match=f"{path}: ROI file not found"):
        _run(tree_copy, extracted, small_config, tmp_path)
    _assert_no_output(tmp_path)


def test_roi_of_another_shape(tree_copy, extracted, small_config, tmp_path):
    subject = extracted["subject"]
    for name in ("streams", "nsdgeneral"):
        path = layout.roi(tree_copy, subject, name)
        image = nib.load(path)
        nib.save(nib.Nifti1Image(np.asarray(image.dataobj)[:-1], image.affine), path)
    path = layout.brainmask(tree_copy, subject)
    image = nib.load(path)
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj)[:-1], image.affine), path)
    with pytest.raises(NSDInputError, match=r"volume shape .* differs from the ROI files'"):
        _run(tree_copy, extracted, small_config, tmp_path)
    _assert_no_output(tmp_path)


@pytest.mark.parametrize("fmt", ["hdf5", "nii.gz"])
def test_truncated_betas_file(tree_copy, extracted, small_config, tmp_path, fmt):
    path = layout.betas(tree_copy, extracted["subject"], 2, fmt)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(NSDInputError, match=f"{path}: (unreadable betas file|read failed)"):
        _run(tree_copy, extracted, small_config, tmp_path, betas_format=fmt)
    _assert_no_output(tmp_path)


def test_session_with_fewer_trials_than_responses(tree_copy, extracted, small_config, tmp_path):
    path = layout.betas(tree_copy, extracted["subject"], 2, "hdf5")
    with h5py.File(path, "r") as h5:
        data = h5["betas"][:-1]
    with h5py.File(path, "w") as h5:
        h5.create_dataset("betas", data=data)
    with pytest.raises(NSDInputError, match=f"{path}: expected .* trials .*found {len(data)}"):
        _run(tree_copy, extracted, small_config, tmp_path, betas_format="hdf5")


def test_empty_roi(tree_copy, extracted, small_config, tmp_path):
    rois = {"nothing": {"file": "streams", "labels": [99]}}
    with pytest.raises(NSDInputError, match="ROI 'nothing'.*selects no voxel"):
        write_roi_betas(tree_copy, extracted["subject"], extracted["trials_path"], small_config["ingestion"], rois,
                        {"nothing": tmp_path / "out" / "nothing.h5"})
    _assert_no_output(tmp_path)


def test_betas_file_reports_shape(extracted):
    with BetasFile(layout.betas(extracted["root"], extracted["subject"], 1, "nii.gz")) as betas:
        hdf5 = BetasFile(layout.betas(extracted["root"], extracted["subject"], 1, "hdf5"))
        assert betas.volume_shape == hdf5.volume_shape and betas.n_trials == hdf5.n_trials
        hdf5.close()
