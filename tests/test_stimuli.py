"""Stimulus rows and captions: exact copies, each caption file read once, clear errors."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from brainldm.nsd import layout, stimuli
from brainldm.nsd.design import NSDInputError


def _caption_files(root):
    return {split: layout.captions(root, split) for split in layout.CAPTION_SPLITS}


def test_images_and_captions_are_exact(synthetic_tree, tmp_path, monkeypatch):
    root = synthetic_tree["root"]
    ids = np.array([5, 1, 30, 5, 2])
    loads = []
    real_load = json.load
    monkeypatch.setattr(stimuli.json, "load", lambda handle: loads.append(handle.name) or real_load(handle))
    stimuli.extract_stimuli(layout.stimuli(root), layout.stim_info(root), _caption_files(root), ids, tmp_path / "s.h5")
    assert len(loads) == len(set(loads)) <= len(layout.CAPTION_SPLITS)  # each caption file at most once
    info = stimuli.read_stim_info(layout.stim_info(root))
    with h5py.File(tmp_path / "s.h5", "r") as out, h5py.File(layout.stimuli(root), "r") as brick:
        np.testing.assert_array_equal(out["nsd_ids"][:], [1, 2, 5, 30])
        for row, nsd_id in enumerate(out["nsd_ids"][:]):
            np.testing.assert_array_equal(out["images"][row], brick["imgBrick"][nsd_id])
            split, coco_id = info.loc[nsd_id, "cocoSplit"], info.loc[nsd_id, "cocoId"]
            with open(layout.captions(root, split)) as handle:
                expected = [a["caption"] for a in json.load(handle)["annotations"] if a["image_id"] == coco_id]
            n = out["n_captions"][row]
            assert n == len(expected) >= 5
            assert [c.decode() for c in out["captions"][row][:n]] == expected
            assert all(c == b"" for c in out["captions"][row][n:])


def test_id_absent_from_the_brick(synthetic_tree, tmp_path):
    root = synthetic_tree["root"]
    with h5py.File(layout.stimuli(root), "r") as h5:
        n_images = h5["imgBrick"].shape[0]
    info = stimuli.read_stim_info(layout.stim_info(root))
    info.loc[n_images] = info.loc[0]  # a table row whose image is not in the brick
    info_path = tmp_path / "info.csv"
    info.to_csv(info_path)
    with pytest.raises(NSDInputError, match=rf"73k id {n_images} absent from imgBrick \({n_images} images\)"):
        stimuli.extract_stimuli(layout.stimuli(root), info_path, _caption_files(root), [0, n_images], tmp_path / "o.h5")
    assert not (tmp_path / "o.h5").exists()


def test_id_absent_from_the_stim_info(synthetic_tree, tmp_path):
    root = synthetic_tree["root"]
    with pytest.raises(NSDInputError, match=r"73k ids \[999999\] absent from nsd_stim_info_merged.csv"):
        stimuli.extract_stimuli(layout.stimuli(root), layout.stim_info(root), _caption_files(root), [999999],
                                tmp_path / "o.h5")


def test_image_without_captions(synthetic_tree, tmp_path):
    root = synthetic_tree["root"]
    info = stimuli.read_stim_info(layout.stim_info(root))
    split, coco_id = info.loc[3, "cocoSplit"], int(info.loc[3, "cocoId"])
    files = _caption_files(root)
    with open(files[split]) as handle:
        coco = json.load(handle)
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] != coco_id]
    files[split] = str(tmp_path / "captions.json")
    with open(files[split], "w") as handle:
        json.dump(coco, handle)
    with pytest.raises(NSDInputError, match=rf"captions.json: no caption for cocoId {coco_id} \(73k id 3\)"):
        stimuli.extract_stimuli(layout.stimuli(root), layout.stim_info(root), files, [3], tmp_path / "o.h5")
    assert not (tmp_path / "o.h5").exists()


@pytest.mark.parametrize(("content", "found"), [
    ('{"annotations": [{"image_id": 1, "caption": "a b', "invalid JSON"),
    ('{"images": []}', "found ['images']"),
])
def test_broken_caption_file_is_named(synthetic_tree, tmp_path, content, found):
    root = synthetic_tree["root"]
    files = _caption_files(root)
    info = stimuli.read_stim_info(layout.stim_info(root))
    split = info.loc[0, "cocoSplit"]
    broken = tmp_path / f"captions_{split}.json"
    broken.write_text(content)
    with pytest.raises(NSDInputError) as error:
        stimuli.extract_stimuli(layout.stimuli(root), layout.stim_info(root), {**files, split: str(broken)},
                                np.array([0]), tmp_path / "s.h5")
    assert str(error.value).startswith(f"{broken}: expected COCO's caption JSON") and found in str(error.value)
    assert not (tmp_path / "s.h5").exists()


def test_missing_caption_file_says_where_captions_come_from(synthetic_tree, tmp_path):
    root = synthetic_tree["root"]
    info = stimuli.read_stim_info(layout.stim_info(root))
    split = info.loc[0, "cocoSplit"]
    missing = layout.captions(tmp_path, split)
    with pytest.raises(NSDInputError, match=rf"{missing}: captions of split '{split}' needed, file not found\. "
                                            "COCO's captions are not part of NSD.*annotations_trainval2017.zip"):
        stimuli.extract_stimuli(layout.stimuli(root), layout.stim_info(root), {split: missing}, np.array([0]),
                                tmp_path / "s.h5")
