"""Manifests list every file of an output set with a checksum that changes with its bytes."""

from __future__ import annotations

import hashlib

import pytest

from brainldm.manifest import content_digest, expand_paths, file_digest, read_manifest, write_subject_manifest


def test_manifest_lists_files_and_folders(tmp_path):
    (tmp_path / "images" / "Xz").mkdir(parents=True)
    (tmp_path / "images" / "Xz" / "1.png").write_bytes(b"png one")
    (tmp_path / "images" / ".hidden").write_bytes(b"skip")
    (tmp_path / "a.tsv").write_bytes(b"abc")
    out = tmp_path / "outputs.tsv"
    write_subject_manifest([tmp_path / "a.tsv", tmp_path / "images"], out)
    digests = read_manifest(out)
    assert list(digests) == [str(tmp_path / "a.tsv"), str(tmp_path / "images" / "Xz" / "1.png")]
    assert digests[str(tmp_path / "a.tsv")] == hashlib.sha256(b"abc").hexdigest()
    (tmp_path / "a.tsv").write_bytes(b"abd")
    assert file_digest(tmp_path / "a.tsv") != digests[str(tmp_path / "a.tsv")]


def test_missing_output_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.h5 does not exist"):
        expand_paths([tmp_path / "nothing.h5"])
    with pytest.raises(FileNotFoundError):
        write_subject_manifest([tmp_path / "nothing.h5"], tmp_path / "m.tsv")
    assert not (tmp_path / "m.tsv").exists()


def test_hdf5_digest_is_of_the_data_not_the_bytes(tmp_path):
    import time

    import h5py
    import numpy as np

    paths = [tmp_path / "x.h5", tmp_path / "y.h5"]
    for path in paths:
        with h5py.File(path, "w") as h5:
            h5.create_group("train")["betas"] = np.arange(6.0).reshape(2, 3)
            h5.attrs["subject"] = "subj01"
        time.sleep(1.1)  # group headers record their creation time
    assert content_digest(paths[0]) == content_digest(paths[1])
    with h5py.File(paths[1], "a") as h5:
        h5["train/betas"][0, 0] = 7.0
    assert content_digest(paths[0]) != content_digest(paths[1])


def test_hdf5_digest_hashes_strings_by_value(tmp_path):
    """Variable-length strings (captions) are read as objects: their values count, not their addresses."""
    import h5py

    paths = [tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "c.h5"]
    for path, last in zip(paths, ["a red ball", "a red ball", "a blue box"]):
        with h5py.File(path, "w") as h5:
            h5.create_dataset("captions", data=["a tent at night", last], dtype=h5py.string_dtype())
    assert content_digest(paths[0]) == content_digest(paths[1]) != content_digest(paths[2])
