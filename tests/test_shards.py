"""The shard store: fingerprints, parts that split the shards, manifests checked at the gather."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from brainldm.files import atomic_path
from brainldm.shards import (
    clean_partial_shards,
    fingerprint,
    mark_complete,
    part_shards,
    read_part_manifests,
    remove_shards,
    shard_is_complete,
    write_part_manifest,
)

IDS = np.arange(10, 17)  # 7 images, shards of 3: 3 shards


@pytest.mark.parametrize("n_shards", [0, 1, 3, 7, 64])
@pytest.mark.parametrize("n_parts", [1, 2, 3, 8])
def test_parts_cover_every_shard_once(n_shards, n_parts):
    runs = [part_shards(n_shards, part, n_parts) for part in range(n_parts)]
    assert [k for run in runs for k in run] == list(range(n_shards))
    with pytest.raises(ValueError, match="expected 0 <= part"):
        part_shards(n_shards, n_parts, n_parts)


def test_cleaning_a_part_leaves_the_other_parts_files(tmp_path):
    """Parts run at once in one folder: a part starting must not remove another's file being written."""
    for number in range(3):
        (tmp_path / f".shard_{number:05d}.abc123.part.h5").write_bytes(b"being written")
    (tmp_path / "shard_00001.h5").write_bytes(b"finished")
    clean_partial_shards(tmp_path, range(1, 2))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".shard_00000.abc123.part.h5", ".shard_00002.abc123.part.h5", "shard_00001.h5"]
    # atomic_path's temporary names are the ones cleaned
    with atomic_path(tmp_path / "shard_00000.h5") as tmp:
        tmp.write_bytes(b"x")
        assert list(tmp_path.glob(".shard_00000.*.part.h5")) != []


def _write_parts(folder, n_parts, base="settings"):
    shard_dir, manifests = folder / "shards", []
    n_shards = -(-len(IDS) // 3)
    for part in range(n_parts):
        shards = []
        for number in part_shards(n_shards, part, n_parts):
            start, stop = 3 * number, min(3 * number + 3, len(IDS))
            expected = fingerprint(base, IDS[start:stop])
            path = shard_dir / f"shard_{number:05d}.h5"
            with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
                h5["nsd_ids"] = IDS[start:stop]
                mark_complete(h5, expected)
            shards.append({"file": path.name, "start": start, "stop": stop, "fingerprint": expected})
        manifests.append(folder / f"part{part}_of_{n_parts}.json")
        write_part_manifest(manifests[-1], (part, n_parts), shard_dir, IDS, ["a", "b"], shards, {"model": base})
    return manifests


def test_manifests_give_the_shards_in_order_and_their_common_attributes(tmp_path):
    manifests = _write_parts(tmp_path, 2)
    shards, common = read_part_manifests(manifests[::-1], IDS, ["a", "b"], "test jobs")
    assert [(s["start"], s["stop"]) for s in shards] == [(0, 3), (3, 6), (6, 7)]
    assert common == {"model": "settings"}
    assert all(shard_is_complete(s["path"], s["fingerprint"], IDS[s["start"]:s["stop"]]) for s in shards)
    remove_shards(shards, keep=False, key="test.keep_shards")
    assert not (tmp_path / "shards").exists()


def test_manifests_that_do_not_fit_are_named(tmp_path):
    manifests = _write_parts(tmp_path, 3)
    with pytest.raises(ValueError, match=r"expected parts 0-2, found \[0, 2\]"):
        read_part_manifests([manifests[0], manifests[2]], IDS, ["a", "b"], "test jobs")
    with pytest.raises(ValueError, match="made for other images"):
        read_part_manifests(manifests, IDS[:-1], ["a", "b"], "test jobs")
    with pytest.raises(ValueError, match=r"holds \['a', 'b'\] but the configuration asks for \['a'\]"):
        read_part_manifests(manifests, IDS, ["a"], "test jobs")
    other = _write_parts(tmp_path / "other", 3, base="other settings")
    with pytest.raises(ValueError, match="common .* differ .*rerun the test jobs"):
        read_part_manifests([manifests[0], *other[1:]], IDS, ["a", "b"], "test jobs")
    (tmp_path / "shards" / "shard_00001.h5").unlink()
    with pytest.raises(ValueError, match="shard_00001.h5: missing or not the shard its part wrote"):
        read_part_manifests(manifests, IDS, ["a", "b"], "test jobs")


def test_kept_shards_stay(tmp_path):
    manifests = _write_parts(tmp_path, 1)
    shards, _ = read_part_manifests(manifests, IDS, ["a", "b"], "test jobs")
    remove_shards(shards, keep=True, key="test.keep_shards")
    assert all(s["path"].exists() for s in shards)
