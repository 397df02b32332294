"""The ROI-betas file's writer and reader (brainldm.nsd.roi_betas): round trip, checks, chunk layout."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from brainldm.errors import IntermediateFileError
from brainldm.nsd.roi_betas import VOXELS_PER_CHUNK, RoiBetas, roi_betas_writer, train_chunks, write_roi_betas

SHAPE = (6, 5, 4)


def _write(path, rng, n_train=12, n_test=4, n_voxels=9, **changes):
    arrays = {"train_betas": rng.normal(size=(n_train, n_voxels)), "train_ids": rng.integers(0, 100, n_train),
              "test_betas": rng.normal(size=(n_test, n_voxels)), "test_ids": np.arange(n_test) * 3,
              "voxel_index": np.sort(rng.choice(np.prod(SHAPE), n_voxels, replace=False))}
    arrays.update(changes)
    write_roi_betas(path, volume_shape=SHAPE, affine=np.eye(4), roi="early", train_sessions=np.ones(n_train, int),
                    test_repetitions=np.full(n_test, 3), attrs={"subject": "subj01"}, **arrays)
    return arrays


def test_round_trip(tmp_path, rng):
    written = _write(tmp_path / "early.h5", rng)
    betas = RoiBetas.read(tmp_path / "early.h5")
    assert (betas.roi, betas.volume_shape, betas.n_voxels) == ("early", SHAPE, 9)
    np.testing.assert_array_equal(betas.train_ids, written["train_ids"])
    np.testing.assert_array_equal(betas.test_ids, written["test_ids"])
    np.testing.assert_array_equal(betas.voxel_index, written["voxel_index"])
    np.testing.assert_array_equal(betas.test_repetitions, 3)
    train, test = betas.arrays()
    assert train.dtype == test.dtype == np.float32
    np.testing.assert_array_equal(train, written["train_betas"].astype(np.float32))
    np.testing.assert_array_equal(test, written["test_betas"].astype(np.float32))
    with betas.betas() as (train_data, _):
        np.testing.assert_array_equal(train_data[:, 2:5], train[:, 2:5])
    with h5py.File(tmp_path / "early.h5", "r") as h5:
        assert h5.attrs["subject"] == "subj01"


def test_a_voxel_batch_is_whole_chunks_at_nsds_size():
    """NSD's ~300,000 brain voxels x 24,980 trials: 4 MB tiles of 4,096 voxels, not a 1.2 MB chunk per trial."""
    rows, columns = train_chunks(24_980, 302_014)
    assert columns == VOXELS_PER_CHUNK and 4096 % columns == 0
    assert rows * columns * 4 == 1 << 22
    assert train_chunks(24_980, 500) == (2097, 500)  # a small ROI: whole rows
    assert train_chunks(0, 500) is None


@pytest.mark.parametrize("change, message", [
    ({"voxel_index": np.arange(8)}, r"8 voxels in voxel_index but betas have 9 \(train\) and 9 \(test\) columns"),
    ({"test_ids": np.array([3, 0, 6, 9])}, "test/nsd_ids must be sorted and unique"),
    ({"voxel_index": np.arange(9) + 200}, r"voxel_index outside the volume \(6, 5, 4\)"),
    ({"train_betas": np.zeros((12, 0)), "test_betas": np.zeros((4, 0)), "voxel_index": np.arange(0)},
     "the ROI mask 'early' selects no voxel"),
])
def test_inconsistent_files_are_refused_naming_the_file(tmp_path, rng, change, message):
    path = tmp_path / "bad.h5"
    if "voxel_index" in change and len(change["voxel_index"]) not in (0, 9):
        # the writer refuses it: write a good file and break it afterwards
        _write(path, rng)
        with h5py.File(path, "a") as h5:
            del h5["voxel_index"]
            h5["voxel_index"] = change["voxel_index"]
    else:
        _write(path, rng, **change)
    with pytest.raises(IntermediateFileError, match=rf"bad\.h5: {message}"):
        RoiBetas.read(path)


def test_missing_dataset_rows_and_too_few_test_images(tmp_path, rng):
    path = tmp_path / "betas.h5"
    _write(path, rng)
    with pytest.raises(IntermediateFileError, match="at least 5 needed"):
        RoiBetas.read(path, min_test_images=5)
    with h5py.File(path, "a") as h5:
        del h5["train/nsd_ids"]
        h5["train/nsd_ids"] = np.arange(11)
    with pytest.raises(IntermediateFileError, match="train/betas has 12 rows but train/nsd_ids 11 ids"):
        RoiBetas.read(path)
    with h5py.File(path, "a") as h5:
        del h5["affine"]
    with pytest.raises(IntermediateFileError, match="dataset 'affine' missing"):
        RoiBetas.read(path)
    with pytest.raises(IntermediateFileError, match="not found"):
        RoiBetas.read(tmp_path / "absent.h5")


def test_an_unfinished_file_is_not_left_behind(tmp_path, rng):
    path = tmp_path / "early.h5"
    with pytest.raises(RuntimeError, match="finish not called"):
        with roi_betas_writer(path, 4, 3) as writer:
            writer.write_train(0, rng.normal(size=(4, 3)))
    with pytest.raises(ValueError, match="expected at most 4 rows of 3 voxels"):
        with roi_betas_writer(path, 4, 3) as writer:
            writer.write_train(2, rng.normal(size=(4, 3)))
    assert not list(tmp_path.iterdir())


def test_training_rows_reach_the_file_a_row_of_chunks_at_a_time(tmp_path, rng):
    """HDF5 rewrites a whole chunk for each partial write: rows come in 64s, the file gets whole chunk rows."""
    starts = []

    class Recording:
        def __init__(self, dataset):
            self.dataset = dataset

        def __setitem__(self, key, value):
            starts.append((key.start, key.stop))
            self.dataset[key] = value

    rows = rng.normal(size=(600, 5000)).astype(np.float32)
    with roi_betas_writer(tmp_path / "brain.h5", 600, 5000) as writer:
        writer._train = Recording(writer._train)
        for start in range(0, 600, 64):
            writer.write_train(start, rows[start:start + 64])
        with pytest.raises(ValueError, match="expected the next row, 600"):
            writer.write_train(10, rows[:1])
        writer.finish(train_ids=np.arange(600), test_betas=rows[:3], test_ids=np.arange(3),
                      voxel_index=np.arange(5000), volume_shape=(50, 10, 10), affine=np.eye(4), roi="brain", units="")
    assert starts == [(0, 256), (256, 512), (512, 600)]
    np.testing.assert_array_equal(RoiBetas.read(tmp_path / "brain.h5").arrays()[0], rows)
