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
from brainldm.nsd.ingest import extract_roi_betas, split_trials
from brainldm.nsd.roi_betas import RoiBetas


@pytest.fixture(scope="module")
def extracted(synthetic_tree, small_config, tmp_path_factory):
    """Trials and ROI betas of the first subject, from HDF5 and from NIfTI."""
    out = tmp_path_factory.mktemp("betas")
    subjects = small_config["subjects"]
    trials = {s: out / f"{s}_trials.tsv" for s in subjects}
    split_trials(synthetic_tree["root"], subjects, small_config["ingestion"], trials, out / "test.tsv")
    subject = subjects[0]
    paths = {}
    for fmt in ("hdf5", "nii.gz"):
        ingestion = {**small_config["ingestion"], "betas_format": fmt}
        paths[fmt] = {roi: out / fmt / f"{roi}.h5" for roi in small_config["rois"]}
        extract_roi_betas(synthetic_tree["root"], subject, trials[subject], ingestion, small_config["rois"], paths[fmt])
    return {"subject": subject, "trials": pd.read_csv(trials[subject], sep="\t"), "paths": paths,
            "trials_path": trials[subject], "root": synthetic_tree["root"]}


def _naive_session(root, subject, session, voxel_index):
    """Whole session read with h5py, masked afterwards: the reference."""
    with h5py.File(layout.betas(root, subject, session, "hdf5"), "r") as h5:
        volume = h5["betas"][()].transpose(0, 3, 2, 1)
    return volume.reshape(len(volume), -1)[:, voxel_index] / BETAS_SCALE


def test_train_rows_and_test_means_are_exact(extracted, small_config):
    root, subject, trials = extracted["root"], extracted["subject"], extracted["trials"]
    betas = RoiBetas.read(extracted["paths"]["hdf5"]["early"])  # the reader's checks pass on the writer's file
    voxel_index, test_ids, n_reps = betas.voxel_index, betas.test_ids, betas.test_repetitions
    train, test = betas.arrays()
    np.testing.assert_array_equal(betas.train_ids, trials.loc[trials["split"] == "train", "nsd_id"])
    np.testing.assert_array_equal(betas.train_sessions, trials.loc[trials["split"] == "train", "session"])
    assert betas.roi == "early" and betas.units == "z-scored per voxel within session"
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
        a, b = RoiBetas.read(extracted["paths"]["hdf5"][roi]), RoiBetas.read(extracted["paths"]["nii.gz"][roi])
        for x, y in zip((*a.arrays(), a.voxel_index, a.test_ids), (*b.arrays(), b.voxel_index, b.test_ids)):
            np.testing.assert_array_equal(x, y)


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
    train, test = RoiBetas.read(extracted["paths"]["hdf5"]["brain"]).arrays()
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
    extract_roi_betas(root, extracted["subject"], extracted["trials_path"], {**small_config["ingestion"], **ingestion},
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
    split_trials(tree_copy, small_config["subjects"], ingestion, trials, tmp_path / "test.tsv")
    table = pd.read_csv(trials[extracted["subject"]], sep="\t")
    assert 3 not in set(table["session"]) and len(table) < len(extracted["trials"])
    out = {roi: tmp_path / "skip" / f"{roi}.h5" for roi in small_config["rois"]}
    extract_roi_betas(tree_copy, extracted["subject"], trials[extracted["subject"]], ingestion, small_config["rois"], out)
    betas = RoiBetas.read(out["early"])
    assert len(betas.train_ids) == (table["split"] == "train").sum()
    assert 3 not in set(betas.train_sessions)


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
        extract_roi_betas(tree_copy, extracted["subject"], extracted["trials_path"], small_config["ingestion"], rois,
                        {"nothing": tmp_path / "out" / "nothing.h5"})
    _assert_no_output(tmp_path)


def test_betas_file_reports_shape(extracted):
    with BetasFile(layout.betas(extracted["root"], extracted["subject"], 1, "nii.gz")) as betas:
        hdf5 = BetasFile(layout.betas(extracted["root"], extracted["subject"], 1, "hdf5"))
        assert betas.volume_shape == hdf5.volume_shape and betas.n_trials == hdf5.n_trials
        hdf5.close()


# --- HDF5 layouts: NSD's one chunk per voxel, per-trial chunks, contiguous -------------------

N_TRIALS, VOLUME = 24, (9, 11, 13)  # (X, Y, Z)
LAYOUTS = {  # h5py keyword arguments of the (trials, Z, Y, X) dataset
    "nsd": {"chunks": (N_TRIALS, 1, 1, 1)},  # NSD's [1 1 1 750] in MATLAB order, uncompressed
    "per_trial": {"chunks": (1,) + VOLUME[::-1], "compression": "gzip"},
    "trial_pairs": {"chunks": (2, 4, 5, 9)},  # several trials per chunk, partial chunks at the edges
    "voxel_blocks": {"chunks": (N_TRIALS, 2, 3, 3)},  # all trials, several voxels per chunk
    "contiguous": {},
}


@pytest.fixture
def layout_files(tmp_path, rng):
    """The same int16 session (trials, X, Y, Z) in every HDF5 layout and as NIfTI."""
    data = rng.integers(-3000, 3000, size=(N_TRIALS,) + VOLUME, dtype=np.int16)
    paths = {}
    for name, kwargs in LAYOUTS.items():
        paths[name] = tmp_path / f"{name}" / "betas_session01.hdf5"
        paths[name].parent.mkdir()
        with h5py.File(paths[name], "w") as h5:
            h5.create_dataset("betas", data=data.transpose(0, 3, 2, 1), **kwargs)
    paths["nii.gz"] = tmp_path / "betas_session01.nii.gz"
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data.transpose(1, 2, 3, 0)), np.eye(4)), paths["nii.gz"])
    return data, paths


def _test_rois(rng):
    """Flat C-order voxel indices of a box, a sparse non-box ROI, one voxel and the whole volume."""
    box = np.zeros(VOLUME, bool)
    box[2:7, 3:9, 5:12] = True  # odd Z start: slabs must still align on chunks
    sparse = rng.random(VOLUME) < 0.2
    sparse[0, 0, 0] = sparse[-1, -1, -1] = False
    one = np.zeros(VOLUME, bool)
    one[4, 0, 12] = True
    return {name: np.flatnonzero(mask) for name, mask in
            {"box": box, "sparse": sparse, "one": one, "all": np.ones(VOLUME, bool)}.items()}


def test_every_layout_reads_the_same_values(layout_files, rng):
    data, paths = layout_files
    plane = 2 * N_TRIALS * VOLUME[0] * VOLUME[1]
    for roi, voxel_index in _test_rois(rng).items():
        expected = data.reshape(N_TRIALS, -1)[:, voxel_index].astype(np.float32) / BETAS_SCALE
        for block_bytes in (1, 3 * plane, 10**9):  # one plane, a few planes, the whole box at once
            for name, path in paths.items():
                got = read_session(path, voxel_index, VOLUME, block_bytes=block_bytes)
                np.testing.assert_array_equal(got, expected, err_msg=f"{name}, {roi}, block_bytes={block_bytes}")


def _chunks_of(key, shape, chunks):
    """Number of chunks a hyperslab (tuple of slices) touches."""
    n = 1
    for k, size, c in zip(key, shape, chunks):
        start, stop, _ = k.indices(size)
        n *= (stop - 1) // c - start // c + 1
    return n


@pytest.mark.parametrize("name", ["nsd", "per_trial", "trial_pairs", "voxel_blocks"])
def test_each_chunk_is_read_once(layout_files, rng, monkeypatch, name):
    _, paths = layout_files
    reads = []
    getitem = h5py.Dataset.__getitem__

    def recording(self, key, *args, **kwargs):
        reads.append((key, self.shape, self.chunks))
        return getitem(self, key, *args, **kwargs)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", recording)
    plane = 2 * N_TRIALS * VOLUME[0] * VOLUME[1]
    for roi, voxel_index in _test_rois(rng).items():
        reads.clear()
        read_session(paths[name], voxel_index, VOLUME, block_bytes=3 * plane)
        xyz = np.unravel_index(voxel_index, VOLUME)
        lo, hi = [int(c.min()) for c in xyz], [int(c.max()) + 1 for c in xyz]
        box = (slice(None), slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))
        shape, chunks = reads[0][1], reads[0][2]
        touched = sum(_chunks_of(key, shape, chunks) for key, *_ in reads)
        assert touched == _chunks_of(box, shape, chunks), f"{roi}: {len(reads)} reads"
        requested = sum(np.prod([len(range(*k.indices(n))) for k, n in zip(key, shape)]) for key, *_ in reads)
        assert requested == N_TRIALS * np.prod([h - o for h, o in zip(hi, lo)])  # no byte of the box twice
        if roi == "all":  # several reads, so that re-reading would show
            assert len(reads) > 1


def test_nsd_layout_is_read_in_slabs_of_all_trials(layout_files):
    _, paths = layout_files
    with BetasFile(paths["nsd"]) as betas:
        blocks = betas.blocks((0, 0, 0), VOLUME, block_bytes=4 * 2 * N_TRIALS * VOLUME[0] * VOLUME[1])
    assert all(trials == slice(0, N_TRIALS) for trials, *_ in blocks)
    assert [(z0, z1) for _, z0, z1 in blocks] == [(0, 4), (4, 8), (8, 12), (12, 13)]
    with BetasFile(paths["trial_pairs"]) as betas:  # 5 trials of box fit: blocks of 4, on chunk boundaries
        blocks = betas.blocks((0, 0, 0), VOLUME, block_bytes=5 * 2 * int(np.prod(VOLUME)))
    assert [(t.start, t.stop) for t, *_ in blocks] == [(0, 4), (4, 8), (8, 12), (12, 16), (16, 20), (20, 24)]


def test_synthetic_hdf5_is_chunked_like_nsd(synthetic_tree, small_config):
    """NSD ships one uncompressed chunk per voxel ([1 1 1 750] in MATLAB order): so does the synthetic tree."""
    subject = small_config["subjects"][0]
    for path in sessions_on_disk(layout.betas_dir(synthetic_tree["root"], subject), "hdf5").values():
        with h5py.File(path, "r") as h5:
            betas = h5["betas"]
            assert betas.dtype == np.int16
            assert betas.chunks == (betas.shape[0], 1, 1, 1) and betas.compression is None


# -- bad data the way real files go bad: float and NaN betas ----------------------------------------


def _float_session(tree, subject, session, tmp_path, nan_at=None, percent=False):
    """A copy of ``tree`` whose session ``session`` of ``subject`` is float32 (as preprocessing tools write)."""
    root = tmp_path / "nsd"
    shutil.copytree(tree["root"], root, copy_function=os.symlink)  # links: only the changed session is new
    for fmt in ("hdf5", "nii.gz"):
        path = layout.betas(root, subject, session, fmt)
        if not os.path.exists(path):
            continue
        if fmt == "hdf5":
            with h5py.File(path, "r") as h5:
                data = h5["betas"][()].astype(np.float32)
            data = data / 300 if percent else data
            if nan_at is not None:
                data[(nan_at[3], nan_at[2], nan_at[1], nan_at[0])] = np.nan
            os.unlink(path)
            with h5py.File(path, "w") as h5:
                h5.create_dataset("betas", data=data, chunks=(data.shape[0], 1, 1, 1))
        else:
            image = nib.load(path)
            data = np.asarray(image.dataobj).astype(np.float32)
            data = data / 300 if percent else data
            if nan_at is not None:
                data[nan_at] = np.nan
            os.unlink(path)  # the link, not the shared tree's file
            nib.save(nib.Nifti1Image(data, image.affine), path)
    return root


def _roi_outputs(root, subject, tmp_path, ingestion):
    from brainldm.nsd.ingest import subject_trials, extract_roi_betas

    table, _ = subject_trials(root, subject, ingestion)
    table["split"] = np.where(table["shared"], "test", "train")
    tmp_path.mkdir(parents=True, exist_ok=True)
    trials = tmp_path / "trials.tsv"
    table.to_csv(trials, sep="\t", index=False)
    outputs = {"early": str(tmp_path / "out" / "early.h5")}
    extract_roi_betas(root, subject, str(trials), ingestion, {"early": {"file": "streams", "labels": [1]}}, outputs)
    return outputs


def _ingestion(small_config, **changes):
    return {**small_config["ingestion"], **changes}


def _early_voxel(tree, subject):
    streams = np.asarray(nib.load(layout.roi(tree["root"], subject, "streams")).dataobj)
    return tuple(int(c[0]) for c in np.nonzero(streams == 1))


@pytest.mark.parametrize("fmt", ["hdf5", "nii.gz"])
def test_nan_betas_stop_extract_roi_betas_naming_file_voxel_and_trial(synthetic_tree, small_config, tmp_path, fmt):
    subject = small_config["subjects"][0]
    voxel = _early_voxel(synthetic_tree, subject)
    root = _float_session(synthetic_tree, subject, 2, tmp_path, nan_at=(*voxel, 4))
    ingestion = _ingestion(small_config, betas_format=fmt, float_betas="percent_signal_change")
    with pytest.raises(NSDInputError) as error:
        _roi_outputs(root, subject, tmp_path, ingestion)
    message = str(error.value)
    assert message.startswith(layout.betas(root, subject, 2, fmt))
    assert f"1 non-finite betas (NaN or infinite) in 1 voxels, the first at voxel (x, y, z) {voxel}, trial 5" in message
    assert "expected finite values" in message and "ingestion.non_finite_betas" in message
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []


def test_nan_betas_can_be_set_to_zero(synthetic_tree, small_config, tmp_path, caplog):
    subject = small_config["subjects"][0]
    voxel = _early_voxel(synthetic_tree, subject)
    root = _float_session(synthetic_tree, subject, 2, tmp_path, nan_at=(*voxel, 4), percent=True)
    ingestion = _ingestion(small_config, betas_format="hdf5", float_betas="percent_signal_change",
                           non_finite_betas="zero", zscore_per_session=False)
    outputs = _roi_outputs(root, subject, tmp_path, ingestion)
    train, test = RoiBetas.read(outputs["early"]).arrays()
    assert np.isfinite(train).all() and np.isfinite(test).all()
    assert any("non-finite betas" in r.getMessage() and "set to 0" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("fmt", ["hdf5", "nii.gz"])
def test_float_betas_are_refused_not_divided_by_300(synthetic_tree, small_config, tmp_path, fmt):
    subject = small_config["subjects"][0]
    root = _float_session(synthetic_tree, subject, 1, tmp_path, percent=True)
    ingestion = _ingestion(small_config, betas_format=fmt, zscore_per_session=False)
    with pytest.raises(NSDInputError) as error:
        _roi_outputs(root, subject, tmp_path, ingestion)
    message = str(error.value)
    assert message.startswith(layout.betas(root, subject, 1, fmt))
    assert "expected NSD's int16 betas (percent signal change x 300), found float32" in message
    assert "ingestion.float_betas: percent_signal_change" in message
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []
    # Read as percent signal change they equal the int16 original (not 300x too small).
    ingestion = {**ingestion, "float_betas": "percent_signal_change"}
    converted = _roi_outputs(root, subject, tmp_path / "converted", ingestion)
    original = _roi_outputs(synthetic_tree["root"], subject, tmp_path / "original",
                            _ingestion(small_config, betas_format=fmt, zscore_per_session=False))
    np.testing.assert_allclose(RoiBetas.read(converted["early"]).arrays()[0],
                               RoiBetas.read(original["early"]).arrays()[0], rtol=1e-6, atol=1e-6)
