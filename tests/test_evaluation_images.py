"""Evaluation inputs: test ids, originals, reconstruction files; each fault named."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from brainldm.evaluation.images import (
    EvaluationInputError,
    load_originals,
    read_images,
    read_test_ids,
    reconstruction_files,
    resize_images,
)
from brainldm.ldm.names import image_name


def _save(folder, names, rng, size=8):
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / name)


def test_test_ids(tmp_path):
    pd.DataFrame({"nsd_id": [3, 7], "subj01_repetitions": [3, 3]}).to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    assert read_test_ids(tmp_path / "t.tsv").tolist() == [3, 7]
    pd.DataFrame({"id": [3]}).to_csv(tmp_path / "bad.tsv", sep="\t", index=False)
    with pytest.raises(EvaluationInputError, match="column 'nsd_id'"):
        read_test_ids(tmp_path / "bad.tsv")


def test_originals_in_the_order_asked(tmp_path, rng):
    images = rng.integers(0, 256, (3, 4, 4, 3), dtype=np.uint8)
    with h5py.File(tmp_path / "s.h5", "w") as h5:
        h5["images"], h5["nsd_ids"] = images, np.array([2, 5, 9])
    np.testing.assert_array_equal(load_originals(tmp_path / "s.h5", [9, 2]), images[[2, 0]])
    with pytest.raises(ValueError, match=r"73k ids \[4\]"):
        load_originals(tmp_path / "s.h5", [4, 5])


def test_every_method_and_sample_found(tmp_path, rng):
    ids = [1, 20]
    names = [image_name(m, i, k) for i in ids for m, ks in (("Xz", [0]), ("Xc", [0, 1]), ("Xzc", [0, 1])) for k in ks]
    _save(tmp_path, names, rng)
    files = reconstruction_files(tmp_path, ids, n_samples=2)
    assert sorted(files) == [("Xc", 0), ("Xc", 1), ("Xz", 0), ("Xzc", 0), ("Xzc", 1)]
    assert files["Xzc", 1][1] == tmp_path / "Xzc" / "00020_1.png"


def test_missing_reconstructions_are_named(tmp_path, rng):
    _save(tmp_path, [image_name("Xz", 1, 0), image_name("Xc", 1, 0), image_name("Xzc", 1, 0)], rng)
    with pytest.raises(EvaluationInputError) as error:
        reconstruction_files(tmp_path, [1, 20], n_samples=1)
    message = str(error.value)
    assert "reconstructions missing for some of the 2 test images" in message
    assert f"Xz: 1 files, e.g. {tmp_path / 'Xz' / '00020.png'} (73k ids [20])" in message
    assert "Xzc: 1 files" in message


def test_unreadable_and_mismatched_images(tmp_path, rng):
    _save(tmp_path, ["a.png"], rng)
    _save(tmp_path, ["b.png"], rng, size=9)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(EvaluationInputError, match=f"{tmp_path / 'broken.png'}: unreadable image file"):
        read_images([tmp_path / "a.png", tmp_path / "broken.png"])
    with pytest.raises(EvaluationInputError, match="images of different sizes"):
        read_images([tmp_path / "a.png", tmp_path / "b.png"])
    assert read_images([tmp_path / "a.png"]).shape == (1, 8, 8, 3)


def test_resize_keeps_range(rng):
    out = resize_images(rng.integers(0, 256, (2, 10, 12, 3), dtype=np.uint8), 20)
    assert out.shape == (2, 3, 20, 20) and 0 <= float(out.min()) and float(out.max()) <= 1
