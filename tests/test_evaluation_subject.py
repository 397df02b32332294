"""One subject's evaluation end to end: identical reconstructions, shuffled ones, missing ones."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from brainldm.config import section_defaults
from brainldm.evaluation import EvaluationInputError, RANDOM_NOTICE, evaluate_subject
from brainldm.evaluation.tables import read_header, read_table
from brainldm.ldm.names import image_name

N_IMAGES, N_SAMPLES = 10, 2
SETTINGS = {**section_defaults("evaluation"), "weights": "random", "device": "cpu", "image_scale": 0.3,
            "display_rows": 3, "random_clip": {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 12,
                                               "num_attention_heads": 2, "patch_size": 14, "projection_dim": 8}}


def _scenes(rng, n, size=48):
    """Smooth random images: blurred noise, so that pixels and features have structure."""
    from scipy.ndimage import gaussian_filter

    noise = rng.normal(size=(n, size, size, 3))
    smooth = gaussian_filter(noise, sigma=(0, 3, 3, 0))
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return (255 * smooth).astype(np.uint8)


def _inputs(folder, rng):
    ids = np.arange(N_IMAGES) * 7 + 2
    originals = _scenes(rng, N_IMAGES)
    with h5py.File(folder / "stimuli.h5", "w") as h5:
        h5["images"], h5["nsd_ids"] = originals, ids
    pd.DataFrame({"nsd_id": ids}).to_csv(folder / "test_images.tsv", sep="\t", index=False)
    shuffled = np.roll(np.arange(N_IMAGES), 1)  # Xzc of image j shows another image
    for row, nsd_id in enumerate(ids):
        for method, samples in (("Xz", [0]), ("Xc", range(N_SAMPLES)), ("Xzc", range(N_SAMPLES))):
            for sample in samples:
                path = folder / "images" / image_name(method, nsd_id, sample)
                path.parent.mkdir(parents=True, exist_ok=True)
                source = originals[shuffled[row]] if method == "Xzc" else originals[row]
                Image.fromarray(source).resize((32, 32)).save(path)  # reconstructions at another size
    return ids


def _outputs(folder):
    return {name: folder / f"{name}.{ext}" for name, ext in
            (("paper_path", "tsv"), ("community_path", "tsv"), ("best_path", "tsv"), ("sheet_path", "png"))}


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evaluation")
    _inputs(folder, np.random.default_rng(1))
    out = _outputs(folder)
    evaluate_subject(folder / "stimuli.h5", folder / "test_images.tsv", folder / "images", N_SAMPLES, SETTINGS,
                     "subj01", threads=2, **out)
    return out


def test_identical_reconstructions_identify_perfectly(evaluated):
    paper = read_table(evaluated["paper_path"])
    assert len(paper) == 3 * 7 * N_IMAGES
    same = paper[paper["method"] != "Xzc"]
    assert same.groupby(["method", "readout"])["accuracy"].mean().min() > 0.95
    community = read_table(evaluated["community_path"])
    same = community[community["method"] != "Xzc"]
    assert same["PixCorr"].min() > 0.95 and same["SSIM"].min() > 0.9  # resized 48 -> 32 -> 128 px
    assert same[["AlexNet(2)", "AlexNet(5)", "InceptionV3", "CLIP"]].mean().min() > 0.95
    assert same[["EffNet-B", "SwAV"]].max().max() < 0.05


def test_shuffled_reconstructions_are_near_chance(evaluated):
    paper = read_table(evaluated["paper_path"])
    shuffled = paper[paper["method"] == "Xzc"]
    # 7 readouts of 10 images: far below the identical pairs' 1.0, about chance
    assert abs(shuffled["accuracy"].mean() - 0.5) < 0.25
    community = read_table(evaluated["community_path"])
    assert community.loc[community["method"] == "Xzc", "PixCorr"].mean() < 0.5


def test_tables_and_sheet(evaluated):
    assert RANDOM_NOTICE in read_header(evaluated["paper_path"])[-1]
    assert any("ORIGINAL FIXED" in line for line in read_header(evaluated["paper_path"]))
    assert any("RECONSTRUCTION FIXED" in line for line in read_header(evaluated["community_path"]))
    community = read_table(evaluated["community_path"])
    assert community.groupby("method")["sample"].nunique().to_dict() == {"Xc": N_SAMPLES, "Xz": 1, "Xzc": N_SAMPLES}
    best = read_table(evaluated["best_path"])
    assert set(best["best_sample"]) <= set(range(N_SAMPLES)) and len(best) == 3 * N_IMAGES
    assert evaluated["sheet_path"].stat().st_size > 5000


def test_missing_reconstructions_stop_before_any_work(tmp_path, rng):
    ids = _inputs(tmp_path, rng)
    (tmp_path / "images" / image_name("Xc", ids[3], 1)).unlink()
    with pytest.raises(EvaluationInputError, match=rf"Xc: 1 files, .*\(73k ids \[{ids[3]}\]\)"):
        evaluate_subject(tmp_path / "stimuli.h5", tmp_path / "test_images.tsv", tmp_path / "images", N_SAMPLES,
                         SETTINGS, "subj01", **_outputs(tmp_path))
    assert not any(path.exists() for path in _outputs(tmp_path).values())
