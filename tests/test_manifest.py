"""Manifests list every file of an output set with a checksum that changes with its bytes."""

from __future__ import annotations

import hashlib

import pytest

from brainldm.manifest import expand_paths, file_digest, read_manifest, write_manifest


def test_manifest_lists_files_and_folders(tmp_path):
    (tmp_path / "images" / "Xz").mkdir(parents=True)
    (tmp_path / "images" / "Xz" / "1.png").write_bytes(b"png one")
    (tmp_path / "images" / ".hidden").write_bytes(b"skip")
    (tmp_path / "a.h5").write_bytes(b"abc")
    out = tmp_path / "outputs.tsv"
    write_manifest([tmp_path / "a.h5", tmp_path / "images"], out)
    digests = read_manifest(out)
    assert list(digests) == [str(tmp_path / "a.h5"), str(tmp_path / "images" / "Xz" / "1.png")]
    assert digests[str(tmp_path / "a.h5")] == hashlib.sha256(b"abc").hexdigest()
    (tmp_path / "a.h5").write_bytes(b"abd")
    assert file_digest(tmp_path / "a.h5") != digests[str(tmp_path / "a.h5")]


def test_missing_output_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.h5 does not exist"):
        expand_paths([tmp_path / "nothing.h5"])
    with pytest.raises(FileNotFoundError):
        write_manifest([tmp_path / "nothing.h5"], tmp_path / "m.tsv")
    assert not (tmp_path / "m.tsv").exists()
