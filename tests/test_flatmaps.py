"""pycortex flatmaps of NIfTI maps in a project-owned filestore (synthetic S1 space)."""

from __future__ import annotations

import csv
import logging
import os

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from brainldm import flatmaps
from brainldm.flatmaps import FlatmapError, figure6, figure9, figure_unique, render_flatmap
from brainldm.volume import save_map


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    """A coarse synthetic anatomy in S1's fullhead space, and maps on it."""
    from brainldm.synthetic.anatomy import build_synthetic_anatomy

    out = tmp_path_factory.mktemp("flat")
    labels_path, transform_dir = out / "streams.nii.gz", out / "pycortex_transform"
    build_synthetic_anatomy(labels_path, transform_dir, "S1", "fullhead", [4, 4, 2], "brainldm_synthetic")
    labels = np.asarray(nib.load(labels_path).dataobj)
    index = np.flatnonzero(labels.ravel() >= 0)
    streams = labels.ravel()[index]
    rng = np.random.default_rng(0)
    maps = out / "maps"
    r = np.where(streams == 1, 0.6, np.where(streams == 5, 0.3, 0.05)) + 0.05 * rng.normal(size=len(index))
    save_map(r.astype(np.float32), index, labels_path, maps / "z_r.nii.gz")
    save_map(r[::-1].copy().astype(np.float32), index, labels_path, maps / "c_r.nii.gz")
    save_map(streams > 0, index, labels_path, maps / "z_sig.nii.gz")
    save_map(streams >= 0, index, labels_path, maps / "c_sig.nii.gz")
    unique = np.where(streams == 1, 0.2, 0.0).astype(np.float32)
    save_map(unique, index, labels_path, maps / "unique_z.nii.gz")
    save_map(unique[::-1].copy(), index, labels_path, maps / "unique_zc.nii.gz")
    save_map(np.where(streams > 0, 1 + streams % 3, 0).astype(np.uint8), index, labels_path, maps / "best.nii.gz")
    with open(maps / "best.tsv", "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerows([["label", "name", "feature", "n_voxels"], [0, "not significant", "", 0],
                          [1, "down_blocks.1", "", 0], [2, "mid_block", "", 0], [3, "up_blocks.2", "", 0]])
    settings = {"filestore": os.fspath(out / "store"), "height": 256, "with_curvature": False, "with_rois": "auto",
                "config_home": os.fspath(out / "config")}
    return {"dir": out, "maps": maps, "transform_dir": transform_dir, "settings": settings, "labels": labels_path}


def check_png(path, min_bytes=5_000):
    assert path.exists() and path.stat().st_size > min_bytes
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape[0] >= 100 and image.shape[1] >= 100
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 20  # not one colour: a map and a colour bar


def test_flatmap_png_in_a_project_filestore(space, monkeypatch, caplog):
    import cortex

    site = os.path.join(cortex.database.default_filestore, "S1")
    before = sorted(os.path.relpath(os.path.join(d, f), site) for d, _, fs in os.walk(site) for f in fs)
    monkeypatch.setattr(flatmaps.shutil, "which", lambda name: None)  # the no-Inkscape path, whatever is installed
    out = space["dir"] / "png" / "z_r.png"
    with caplog.at_level(logging.INFO, logger="brainldm.flatmaps"):
        render_flatmap(space["maps"] / "z_r.nii.gz", out, space["settings"], space["transform_dir"], kind="r",
                       mask_path=space["maps"] / "z_sig.nii.gz")
    check_png(out)
    assert "Inkscape not found" in caplog.text and "without ROI outlines" in caplog.text
    store = space["dir"] / "store"
    assert (store / "S1" / "transforms" / "brainldm_synthetic" / "matrices.xfm").is_file()
    assert os.path.realpath(cortex.db.filestore) == os.path.realpath(store)
    after = sorted(os.path.relpath(os.path.join(d, f), site) for d, _, fs in os.walk(site) for f in fs)
    assert after == before  # the site filestore is never written
    assert [p.name for p in out.parent.iterdir()] == ["z_r.png"]


@pytest.mark.skipif(not flatmaps.inkscape_available(),
                    reason="Debian's inkscape is not installed (optional extra; .ci/run installs it as root)")
def test_roi_outlines_with_inkscape(space, caplog):
    maps, out = space["maps"], space["dir"] / "rois"
    with caplog.at_level(logging.INFO, logger="brainldm.flatmaps"):
        render_flatmap(maps / "z_r.nii.gz", out / "with.png", space["settings"], space["transform_dir"], kind="r")
    assert "Inkscape not found" not in caplog.text
    render_flatmap(maps / "z_r.nii.gz", out / "without.png", dict(space["settings"], with_rois=False),
                   space["transform_dir"], kind="r")
    check_png(out / "with.png")
    with_rois, without = (np.asarray(Image.open(out / f"{n}.png").convert("RGB")).astype(int) for n in ("with", "without"))
    assert with_rois.shape == without.shape
    changed = np.abs(with_rois - without).sum(axis=2) > 30
    # S1's ROI outlines and labels (V1-V3, FFA, PPA, ...) are drawn over the map: a few percent of the pixels
    assert 0.005 < changed.mean() < 0.3, changed.mean()


def test_paper_panels(space):
    maps, xfm = space["maps"], space["transform_dir"]
    settings = dict(space["settings"], with_rois=False)  # predictable time whether or not Inkscape is installed
    out = space["dir"] / "png"
    figure6({"z": maps / "z_r.nii.gz", "c": maps / "c_r.nii.gz"},
            {"z": maps / "z_sig.nii.gz", "c": maps / "c_sig.nii.gz"}, out / "fig6.png", settings, xfm)
    figure_unique({"noise 0.5": {"z": maps / "unique_z.nii.gz", "zc": maps / "unique_zc.nii.gz"},
                   "noise 0.8": {"z": maps / "unique_z.nii.gz", "zc": maps / "unique_zc.nii.gz"}},
                  out / "fig7.png", settings, xfm, title="z vs zc over noise levels")
    figure9({"t0.2": maps / "best.nii.gz", "t1": maps / "best.nii.gz"},
            {"t0.2": maps / "best.tsv", "t1": maps / "best.tsv"}, out / "fig9.png", settings, xfm)
    for name in ("fig6", "fig7", "fig9"):
        check_png(out / f"{name}.png", 20_000)
    wide, tall = Image.open(out / "fig7.png").size
    assert wide > tall  # two columns (noise levels) x two rows (bands)


def test_missing_subject_or_transform_is_named_and_maps_stay(space):
    maps = sorted(space["maps"].glob("*.nii.gz"))
    out = space["dir"] / "bad" / "x.png"
    with pytest.raises(FlatmapError, match=r"pycortex subject 'NoSuchSubject' not found"):
        render_flatmap(space["maps"] / "z_r.nii.gz", out, dict(space["settings"], subject="NoSuchSubject"))
    with pytest.raises(FlatmapError, match=r"pycortex transform 'no_such_xfm' not found for subject 'S1'"):
        render_flatmap(space["maps"] / "z_r.nii.gz", out, dict(space["settings"], transform="no_such_xfm"))
    with pytest.raises(FlatmapError, match=r"does not match pycortex transform S1/fullhead"):
        render_flatmap(space["maps"] / "z_r.nii.gz", out, dict(space["settings"], transform="fullhead"))
    assert not out.exists()
    assert sorted(space["maps"].glob("*.nii.gz")) == maps  # a flatmap failure leaves the NIfTI maps in place
    for path in maps:
        nib.load(path).get_fdata()


def test_settings_per_nsd_subject():
    s = flatmaps.flatmap_settings({"subjects": {"subj01": {"subject": "subj01", "transform": "func1pt8"}}}, "subj01")
    assert (s["subject"], s["transform"]) == ("subj01", "func1pt8")
    assert flatmaps.flatmap_settings({}, "subj02")["subject"] == "S1"
    with pytest.raises(ValueError, match=r"'flatmaps\.colour' is not known"):
        flatmaps.flatmap_settings({"colour": "red"})


def test_one_png_per_map_in_a_folder_that_appears_complete(space):
    maps, settings = space["maps"], dict(space["settings"], with_rois=False)
    out = space["dir"] / "per_map"
    flatmaps.draw_map_flatmaps({"z_r": {"map": maps / "z_r.nii.gz", "mask": maps / "z_sig.nii.gz", "kind": "r"},
                              "best": {"map": maps / "best.nii.gz", "labels": maps / "best.tsv", "kind": "layer"}},
                             out, settings, space["transform_dir"])
    assert sorted(p.name for p in out.iterdir()) == ["best.png", "z_r.png"]
    for path in out.iterdir():
        check_png(path)
    # a failure half way leaves neither a folder that looks finished nor the old one
    broken = {"z_r": {"map": maps / "z_r.nii.gz", "kind": "r"}, "bad": {"map": maps / "missing.nii.gz"}}
    with pytest.raises(FileNotFoundError):
        flatmaps.draw_map_flatmaps(broken, space["dir"] / "per_map_bad", settings, space["transform_dir"])
    assert not (space["dir"] / "per_map_bad").exists()
    assert [p.name for p in space["dir"].iterdir() if p.name.startswith(".per_map_bad")] == []


def test_roi_outlines_are_rendered_once_per_job(space, monkeypatch):
    """Inkscape's ROI texture is the same for every map of a subject: one rendering for all the PNGs."""
    from cortex.svgoverlay import SVGOverlay

    calls = []

    def texture(self, layer_name, height, **kwargs):
        calls.append(layer_name)
        return np.zeros((int(height), int(height) * 2, 4), np.uint8)  # transparent: no Inkscape needed

    monkeypatch.setattr(SVGOverlay, "get_texture", texture)
    monkeypatch.setattr(flatmaps, "inkscape_available", lambda: True)
    maps = space["maps"]
    flatmaps.draw_map_flatmaps({name: {"map": maps / f"{name}.nii.gz", "kind": "r"} for name in ("z_r", "c_r")},
                               space["dir"] / "textures", dict(space["settings"], with_rois=True),
                               space["transform_dir"])
    assert calls == ["rois"]
    assert SVGOverlay.get_texture is texture  # restored after the job


def test_figure_spec_follows_the_configured_features():
    from brainldm.ldm.names import banded_zc, feature_specs, unet_stages

    specs = feature_specs({"strengths": [0.2, 0.5, 0.8], "stages": [0.2, 0.66, 1.0],
                           "unet_blocks": ["mid_block", "up_blocks.2"]})
    # the joint models: the zc of either comparison, each once, in the features' order
    assert banded_zc(specs) == ["zc_s0.2_t1", "zc_s0.5_t1", "zc_s0.8_t0.2", "zc_s0.8_t0.66", "zc_s0.8_t1"]
    assert unet_stages(specs) == ["0.2", "0.66", "1"]

    def spec(figure, specs=specs):
        return flatmaps.figure_spec(figure, specs, ("z", "zc"), lambda feature, name: f"{feature}_{name}",
                                    lambda stage: {"map": f"layer_t{stage}", "labels": f"labels_t{stage}"})

    six = spec("figure6")
    assert list(six["r"]) == ["z", "c", "zc_s0.2_t1", "zc_s0.5_t1", "zc_s0.8_t1"]  # noise levels at the last stage
    assert six["significant"]["c"] == "c_significant"
    seven, eight = spec("figure7"), spec("figure8")
    assert list(seven) == ["noise 0.2", "noise 0.5", "noise 0.8"]
    assert seven["noise 0.5"] == {"z": "z+zc_s0.5_t1_unique_z", "zc": "z+zc_s0.5_t1_unique_zc"}
    assert list(eight) == ["stage 0.2", "stage 0.66", "stage 1"]  # stages at the largest noise level
    assert eight["stage 0.2"]["zc"] == "z+zc_s0.8_t0.2_unique_zc"
    assert spec("figure9") == {"layers": {"t0.2": "layer_t0.2", "t0.66": "layer_t0.66", "t1": "layer_t1"},
                               "labels": {"t0.2": "labels_t0.2", "t0.66": "labels_t0.66", "t1": "labels_t1"}}
    bare = feature_specs({"stages": [], "unet_blocks": []})  # z and c only
    assert [spec(f, bare) for f in ("figure7", "figure8", "figure9")] == [None, None, None]
    assert list(spec("figure6", bare)["r"]) == ["z", "c"]
    with pytest.raises(ValueError, match="unknown figure 'figure5'"):
        spec("figure5")


def test_paper_figure_names_are_checked(space):
    with pytest.raises(ValueError, match="unknown figure 'figure5'"):
        flatmaps.draw_paper_figure("figure5", {}, space["dir"] / "x.png", space["settings"])
    maps = space["maps"]
    spec = {"stage 0.2": {"z": maps / "unique_z.nii.gz", "zc": maps / "unique_zc.nii.gz"}}
    out = space["dir"] / "png" / "figure8.png"
    flatmaps.draw_paper_figure("figure8", spec, out, dict(space["settings"], with_rois=False), space["transform_dir"],
                          nsd_subject="subj01")
    check_png(out, 10_000)
