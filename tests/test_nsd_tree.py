"""The synthetic NSD tree loads exactly as real NSD files load, and carries its planted truth."""

from __future__ import annotations

import hashlib
import json

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import scipy.io

from brainldm.nsd import layout
from brainldm.nsd.layout import NSD_SUBJECTS
from brainldm.nsd.betas import sessions_on_disk
from brainldm.synthetic import SyntheticDesign
from brainldm.synthetic.nsd_tree import BETAS_SCALE, ROLES, lowlevel_responses
from brainldm.synthetic.scenes import CATEGORIES

from conftest import build_tree


@pytest.fixture(scope="module")
def tree(synthetic_tree, small_config):
    root = synthetic_tree["root"]
    design = SyntheticDesign.from_config(small_config["synthetic"])
    mat = scipy.io.loadmat(layout.expdesign(root))
    return {**synthetic_tree, "design": design, "mat": mat, "subjects": small_config["subjects"]}


def test_expdesign_is_one_based_with_shared_images_first(tree):
    design, mat = tree["design"], tree["mat"]
    masterordering, subjectim, sharedix = mat["masterordering"], mat["subjectim"], mat["sharedix"]
    assert masterordering.shape == (1, design.n_trials)
    assert subjectim.shape == (len(NSD_SUBJECTS), design.images_per_subject)
    assert sharedix.shape == (1, design.n_shared_images)
    assert masterordering.min() == 1 and masterordering.max() == design.images_per_subject
    assert np.all(np.bincount(masterordering.ravel().astype(int))[1:] == design.repetitions)
    assert subjectim.min() == 1 and subjectim.max() == design.n_images
    for row in subjectim:  # the shared images open every subject's list
        np.testing.assert_array_equal(row[: design.n_shared_images], sharedix.ravel())
    unique = subjectim[:, design.n_shared_images :]
    assert len(np.unique(unique)) == unique.size  # no unique image shown to two subjects


def test_stim_info_rep_columns_point_back_to_the_images(tree):
    mat, design = tree["mat"], tree["design"]
    info = pd.read_csv(layout.stim_info(tree["root"]), index_col=0)
    assert list(info.index) == list(range(design.n_images))
    np.testing.assert_array_equal(info["nsdId"], info.index)
    shared0 = mat["sharedix"].ravel().astype(int) - 1
    assert set(np.flatnonzero(info["shared1000"])) == set(shared0)
    masterordering = mat["masterordering"].ravel().astype(int)
    for k, subject_ids in enumerate(mat["subjectim"].astype(int) - 1, start=1):
        assert set(np.flatnonzero(info[f"subject{k}"])) == set(subject_ids)
        reps = info.loc[subject_ids, [f"subject{k}_rep{r}" for r in range(3)]].to_numpy()
        assert np.all((reps > 0).sum(axis=1) == design.repetitions)
        for nsd_id, trials in zip(subject_ids, reps):
            for trial in trials[trials > 0]:  # 1-based trial -> 1-based 10k index -> 73k id
                assert subject_ids[masterordering[trial - 1] - 1] == nsd_id


def test_responses_match_design_and_give_consistent_split(tree):
    mat, design = tree["mat"], tree["design"]
    info = pd.read_csv(layout.stim_info(tree["root"]), index_col=0)
    masterordering = mat["masterordering"].ravel().astype(int)
    n_released = design.sessions_released * design.trials_per_session
    seen_shared = []
    for subject in tree["subjects"]:
        k = NSD_SUBJECTS.index(subject)
        responses = pd.read_csv(layout.responses(tree["root"], subject), sep="\t")
        assert len(responses) == n_released
        np.testing.assert_array_equal(responses["10KID"], masterordering[:n_released])
        np.testing.assert_array_equal(responses["73KID"], mat["subjectim"][k, responses["10KID"] - 1])
        assert responses["SESSION"].max() == design.sessions_released
        assert responses["RUN"].max() == design.runs_per_session and responses["TRIAL"].min() == 1
        # shared images with a trial in the released sessions, from the csv rep columns
        reps = info[[f"subject{k + 1}_rep{r}" for r in range(3)]].to_numpy()
        from_csv = set(np.flatnonzero(info["shared1000"] & ((reps > 0) & (reps <= n_released)).any(axis=1)))
        from_tsv = set(responses.loc[responses["10KID"] <= design.n_shared_images, "73KID"] - 1)
        assert from_csv == from_tsv
        seen_shared.append(from_tsv)
        n_test_trials = int(np.isin(responses["73KID"] - 1, list(from_tsv)).sum())
        assert n_test_trials + int((responses["10KID"] > design.n_shared_images).sum()) == n_released
    test_images = set.intersection(*seen_shared)
    assert 0 < len(test_images) <= design.n_shared_images


def test_brick_and_captions_describe_the_scenes(tree, small_config):
    design, size = tree["design"], small_config["synthetic"]["image_size"]
    with h5py.File(layout.stimuli(tree["root"]), "r") as h5:
        brick = h5["imgBrick"]
        assert brick.shape == (design.n_images, size, size, 3) and brick.dtype == np.uint8
        assert brick[0].std() > 0
    info = pd.read_csv(layout.stim_info(tree["root"]), index_col=0)
    by_split = {}
    for split in layout.CAPTION_SPLITS:
        with open(layout.captions(tree["root"], split)) as handle:
            coco = json.load(handle)
        for ann in coco["annotations"]:
            by_split.setdefault(split, {}).setdefault(ann["image_id"], []).append(ann["caption"])
    with h5py.File(tree["truth"] / "scenes.h5", "r") as h5:
        categories = h5["category"][:]
    for nsd_id, row in info.iterrows():
        captions = by_split[row["cocoSplit"]][row["cocoId"]]
        assert 5 <= len(captions) <= 7
        names = [CATEGORIES[c] for c in categories[nsd_id] if c >= 0]
        assert all(any(name in caption.lower() for name in names) for caption in captions)


@pytest.mark.parametrize("subject_index", [0, 1])
def test_betas_formats_are_transposes_and_zero_outside_brain(tree, subject_index):
    subject = tree["subjects"][subject_index]
    root, design = tree["root"], tree["design"]
    streams = nib.load(layout.roi(root, subject, "streams"))
    mask = np.asarray(nib.load(layout.brainmask(root, subject)).dataobj) > 0
    np.testing.assert_array_equal(mask, np.asarray(streams.dataobj) >= 0)
    for session in range(1, design.sessions_released + 1):
        with h5py.File(layout.betas(root, subject, session, "hdf5"), "r") as h5:
            hdf5 = h5["betas"][:]
        nii = nib.load(layout.betas(root, subject, session, "nii.gz"))
        assert hdf5.dtype == np.int16 and nii.get_data_dtype() == np.int16
        assert hdf5.shape == (design.trials_per_session,) + streams.shape[::-1]
        np.testing.assert_array_equal(np.asarray(nii.dataobj), hdf5.transpose(3, 2, 1, 0))
        np.testing.assert_allclose(nii.affine, streams.affine)
        assert not np.any(np.asarray(nii.dataobj)[~mask])
    on_disk = sessions_on_disk(layout.betas_dir(root, subject), "hdf5")
    assert list(on_disk) == list(range(1, design.sessions_released + 1))  # none of a withheld session


def _trial_matrix(root, subject, design, voxel_index):
    rows = []
    for session in range(1, design.sessions_released + 1):
        with h5py.File(layout.betas(root, subject, session, "hdf5"), "r") as h5:
            volume = h5["betas"][:].transpose(0, 3, 2, 1).reshape(design.trials_per_session, -1)
        rows.append(volume[:, voxel_index] / BETAS_SCALE)
    return np.concatenate(rows)


def test_planted_signal_is_in_the_betas(tree):
    """Per-trial betas correlate with the noiseless planted signal where it was planted, not elsewhere."""
    subject, root, design = tree["subjects"][0], tree["root"], tree["design"]
    with h5py.File(tree["truth"] / f"{subject}.h5", "r") as h5:
        voxel_index, role, signal = h5["voxel_index"][:], h5["role"][:], h5["signal"][:]
        gains, offsets = h5["session_gain"][:], h5["session_offset"][:]
    betas = _trial_matrix(root, subject, design, voxel_index)
    responses = pd.read_csv(layout.responses(root, subject), sep="\t")
    planted = signal[responses["10KID"].to_numpy() - 1] * gains[responses["SESSION"].to_numpy() - 1, None]
    residual = betas - offsets[responses["SESSION"].to_numpy() - 1] - planted
    live = role != ROLES.index("dead")
    # what is left after removing the truth is the per-trial noise, at the planted level
    with h5py.File(tree["truth"] / f"{subject}.h5", "r") as h5:
        noise_sd = h5["noise_sd"][:]
    ratio = residual[:, live].std(axis=0) / noise_sd[live]
    assert np.all(np.abs(ratio - 1) < 0.35), ratio.min()
    assert np.all(betas[:, ~live] == 0)

    def corr(a, b):
        a, b = a - a.mean(0), b - b.mean(0)
        return (a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0))

    centred = betas - offsets[responses["SESSION"].to_numpy() - 1]
    for name in ("lowlevel", "semantic", "mixed"):
        voxels = role == ROLES.index(name)
        assert voxels.any(), name
        assert np.median(corr(centred[:, voxels], planted[:, voxels])) > 0.3, name
    noise = role == ROLES.index("noise")
    assert np.all(signal[:, noise] == 0)


def test_rois_and_noise_ceiling_follow_the_truth(tree):
    subject, root = tree["subjects"][0], tree["root"]
    with h5py.File(tree["truth"] / f"{subject}.h5", "r") as h5:
        voxel_index, stream, role, ncsnr = h5["voxel_index"][:], h5["stream"][:], h5["role"][:], h5["ncsnr"][:]
    streams = np.asarray(nib.load(layout.roi(root, subject, "streams")).dataobj).ravel()
    np.testing.assert_array_equal(streams[voxel_index], stream)
    assert set(np.unique(streams)) <= set(layout.STREAMS_LABELS)
    assert np.all(role[stream == 1] != ROLES.index("semantic"))
    assert np.all(np.isin(role[stream == 0], [ROLES.index("noise"), ROLES.index("dead")]))
    general = np.asarray(nib.load(layout.roi(root, subject, "nsdgeneral")).dataobj).ravel()
    np.testing.assert_array_equal(general[voxel_index] == 1, stream > 0)
    ncsnr_map = np.asarray(nib.load(layout.ncsnr(root, subject)).dataobj).ravel()
    np.testing.assert_allclose(ncsnr_map[voxel_index], ncsnr, rtol=1e-6)
    assert np.all(ncsnr[role == ROLES.index("noise")] == 0) and np.all(ncsnr[role == ROLES.index("lowlevel")] > 0)


def _digests(folder):
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_same_seed_gives_byte_identical_files(tree, tmp_path, small_config):
    again = build_tree(tmp_path / "again", tree["labels"], small_config)
    first = _digests(tree["root"]) | {f"truth/{k}": v for k, v in _digests(tree["truth"]).items()}
    second = _digests(again["root"]) | {f"truth/{k}": v for k, v in _digests(again["truth"]).items()}
    assert first.keys() == second.keys() and len(first) > 20
    assert first == second


def test_another_seed_gives_other_data(tree, tmp_path, small_config):
    config = {**small_config, "subjects": small_config["subjects"][:1],
              "synthetic": {**small_config["synthetic"], "seed": small_config["synthetic"]["seed"] + 1}}
    other = build_tree(tmp_path / "other", tree["labels"], config)
    subject = config["subjects"][0]
    for path in (layout.expdesign(""), layout.stimuli(""), layout.responses("", subject)):
        assert (other["root"] / path).read_bytes() != (tree["root"] / path).read_bytes(), path


def test_early_responses_follow_edges_in_the_receptive_field_not_colour():
    """Contrast energy: flat images give nothing; an edge counts inside the field only, whatever its contrast."""
    size = 64
    flat = np.stack([np.full((size, size, 3), value, np.uint8) for value in ((0, 0, 0), (200, 30, 30), (255, 255, 255))])
    left_edge = np.zeros((size, size, 3), np.uint8)
    left_edge[:, : size // 4] = 255  # a vertical edge at x = 0.25
    right_edge = left_edge[:, ::-1].copy()  # ... at x = 0.75
    fields = {"rf_x": np.array([0.25, 0.75]), "rf_y": np.array([0.5, 0.5]), "rf_sigma": np.array([0.05, 0.05])}
    assert np.allclose(lowlevel_responses(flat, fields), 0)
    (left_at_left, left_at_right), (right_at_left, right_at_right) = lowlevel_responses(
        np.stack([left_edge, right_edge]), fields)
    assert left_at_left > 20 * left_at_right and right_at_right > 20 * right_at_left
    assert np.isclose(left_at_left, right_at_right)  # mirror images, mirrored fields
    # divisive normalisation: an image's overall contrast cancels, where its edges are stays
    faint = (left_edge // 2).astype(np.uint8)
    np.testing.assert_allclose(lowlevel_responses(faint[None], fields), [[left_at_left, left_at_right]], rtol=1e-6)
