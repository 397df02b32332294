"""Encoding stage of the workflow: maps recover the planted voxel roles of the synthetic subjects."""

from __future__ import annotations

import csv

import h5py
import nibabel as nib
import numpy as np
import pytest

from brainldm.synthetic.nsd_tree import ROLES

pytestmark = pytest.mark.workflow


def _roles(workflow_run, subject, voxel_index):
    """Planted role of each voxel of an encoding result (as the truth file names them)."""
    with h5py.File(workflow_run / "resources" / "synthetic_nsd_truth" / f"{subject}.h5", "r") as h5:
        truth_index, role = h5["voxel_index"][()], h5["role"][()]
    order = np.argsort(truth_index)
    position = order[np.searchsorted(truth_index, voxel_index, sorter=order)]
    assert np.array_equal(truth_index[position], voxel_index)
    return np.asarray(ROLES)[role[position]]


def _result(workflow_run, subject, name, folder="encoding"):
    with h5py.File(workflow_run / "results" / subject / folder / f"{name}.h5", "r") as h5:
        return {key: h5[key][()] for key in ("r", "significant", "voxel_index")} | {"fdr_q": h5.attrs["fdr_q"]}


@pytest.mark.parametrize("subject", ["subj01", "subj02"])
def test_c_map_finds_the_planted_category_voxels(workflow_run, subject):
    """c is significant in most category voxels and beats z there (measured: 100%, r 0.73 vs 0.05-0.08)."""
    z, c = _result(workflow_run, subject, "z"), _result(workflow_run, subject, "c")
    assert np.array_equal(z["voxel_index"], c["voxel_index"])
    role = _roles(workflow_run, subject, z["voxel_index"])
    semantic = role == "semantic"
    assert semantic.sum() > 50
    assert c["significant"][semantic].mean() > 0.8, c["significant"][semantic].mean()
    assert np.median(c["r"][semantic]) > np.median(z["r"][semantic]) + 0.4
    assert np.mean(c["r"][semantic] > z["r"][semantic]) > 0.9


@pytest.mark.parametrize("subject", ["subj01", "subj02"])
def test_z_map_finds_the_planted_receptive_field_voxels(workflow_run, subject):
    """z is significant in most receptive-field voxels and beats c there.

    Measured on the suite's data: z significant in 97% of them, median r 0.56-0.59 against
    c's 0.26-0.28, z above c in 97% of the voxels (captions say which objects, not where the
    edges fall).
    """
    z, c = _result(workflow_run, subject, "z"), _result(workflow_run, subject, "c")
    role = _roles(workflow_run, subject, z["voxel_index"])
    lowlevel, noise = role == "lowlevel", role == "noise"
    assert lowlevel.sum() > 200
    assert z["significant"][lowlevel].mean() > 0.75, z["significant"][lowlevel].mean()
    assert np.median(z["r"][lowlevel]) > np.median(c["r"][lowlevel]) + 0.15
    assert np.mean(z["r"][lowlevel] > c["r"][lowlevel]) > 0.8
    assert np.median(z["r"][lowlevel]) > np.median(z["r"][noise]) + 0.4


@pytest.mark.parametrize("subject", ["subj01", "subj02"])
def test_pure_noise_voxels_stay_at_the_nominal_fdr_rate(workflow_run, subject):
    names = [p.stem for p in (workflow_run / "results" / subject / "encoding").glob("*.h5")]
    assert {"z", "c"} <= set(names) and len(names) > 4
    for name in names:
        result = _result(workflow_run, subject, name)
        noise = _roles(workflow_run, subject, result["voxel_index"]) == "noise"
        assert noise.sum() > 100
        assert result["significant"][noise].mean() <= result["fdr_q"], name


def test_maps_are_the_vectors_on_the_subject_grid(workflow_run):
    subject = "subj01"
    z = _result(workflow_run, subject, "z")
    image = nib.load(workflow_run / "results" / subject / "encoding" / "maps" / "z_r.nii.gz")
    reference = nib.load(workflow_run / "resources" / "synthetic_nsd" / "nsddata" / "ppdata" / subject /
                         "func1pt8mm" / "roi" / "streams.nii.gz")
    assert image.shape == reference.shape and np.allclose(image.affine, reference.affine)
    volume = np.asarray(image.dataobj).reshape(-1)
    assert np.allclose(volume[z["voxel_index"]], z["r"], atol=1e-6)
    outside = np.ones(volume.size, bool)
    outside[z["voxel_index"]] = False
    assert not volume[outside].any()


def test_joint_model_splits_variance_by_band(workflow_run):
    """In the joint z + zc models, receptive-field voxels owe more unique variance to z than category voxels."""
    subject = "subj01"
    paths = sorted((workflow_run / "results" / subject / "encoding" / "banded").glob("z+zc_*.h5"))
    assert len(paths) == 3  # noise levels at the final stage and stages at the largest noise level
    for path in paths:
        with h5py.File(path, "r") as h5:
            unique_z = h5["unique/z"][()]
            role = _roles(workflow_run, subject, h5["voxel_index"][()])
        # measured: 0.65-0.77 against 0.02-0.06
        assert np.median(unique_z[role == "lowlevel"]) > np.median(unique_z[role == "semantic"]) + 0.3, path.name


def test_best_layer_maps_and_roi_summary(workflow_run, small_config):
    subject = "subj01"
    encoding = workflow_run / "results" / subject / "encoding"
    blocks = small_config["features"]["unet_blocks"]
    for stage in ("0.5", "1"):
        with open(encoding / f"best_unet_layer_t{stage}.tsv", newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        assert [row["name"] for row in rows[1:]] == blocks
        label = np.asarray(nib.load(encoding / "maps" / f"best_unet_layer_t{stage}_label.nii.gz").dataobj)
        counts = np.bincount(label.reshape(-1).astype(int), minlength=len(blocks) + 1)
        assert [int(row["n_voxels"]) for row in rows[1:]] == counts[1:len(blocks) + 1].tolist()
    with open(encoding / "roi_summary.tsv", newline="") as handle:
        summary = list(csv.DictReader(handle, delimiter="\t"))
    by = {(row["model"], row["roi"]): row for row in summary}
    assert float(by["z", "early"]["mean_r"]) > float(by["z", "ventral"]["mean_r"])
    assert float(by["c", "ventral"]["mean_r"]) > float(by["z", "ventral"]["mean_r"])


@pytest.mark.parametrize("subject", ["subj01", "subj02"])
def test_flatmaps_are_drawn(workflow_run, subject):
    flatmaps = workflow_run / "results" / subject / "flatmaps"
    for figure in ("figure6", "figure7", "figure8", "figure9"):
        assert (flatmaps / f"{figure}.png").stat().st_size > 10_000
    pngs = {p.stem for p in (flatmaps / "maps").glob("*.png")}
    assert {"z_r", "c_r", "best_unet_layer_t1"} <= pngs
    log = (workflow_run / "logs" / "flatmaps" / "draw_map_flatmaps" / f"{subject}.log").read_text()
    assert "ROI outlines" in log
