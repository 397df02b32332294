"""The PCA feature file's writer and reader (brainldm.reduced): round trip and the checks of each field."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from brainldm.reduced import ReducedFeature, write_reduced_feature

from conftest import assert_reader_names_the_fault


def _write(path, rng, train_ids=(3, 5, 8, 9), test_ids=(0, 4), k=3):
    train = rng.normal(size=(len(train_ids), k)).astype(np.float32)
    test = rng.normal(size=(len(test_ids), k)).astype(np.float32)
    write_reduced_feature(path, train, train_ids, test, test_ids, datasets={"mean": np.zeros(10)},
                          attrs={"n_components": k})
    return train, test


def test_round_trip(tmp_path, rng):
    train, test = _write(tmp_path / "z.h5", rng)
    feature = ReducedFeature.read(tmp_path / "z.h5")
    np.testing.assert_array_equal(feature.train, train)
    np.testing.assert_array_equal(feature.test, test)
    np.testing.assert_array_equal(feature.train_ids, [3, 5, 8, 9])
    np.testing.assert_array_equal(feature.test_ids, [0, 4])
    with h5py.File(tmp_path / "z.h5", "r") as h5:
        assert h5.attrs["n_components"] == 3 and h5["mean"].shape == (10,)


@pytest.mark.parametrize(("train_ids", "test_rows", "k"), [
    ((5, 3, 8, 9), 2, 3),  # ids not sorted
    ((3, 5, 8, 9), 3, 3),  # a test row more than its ids
    ((3, 5, 8, 9), 2, 0),  # no column
])
def test_writer_refuses_what_does_not_fit(tmp_path, rng, train_ids, test_rows, k):
    with pytest.raises(ValueError):
        write_reduced_feature(tmp_path / "z.h5", rng.normal(size=(4, k)), train_ids, rng.normal(size=(test_rows, k)),
                              (0, 4))
    assert not (tmp_path / "z.h5").exists()


@pytest.mark.parametrize(("change", "message"), [
    (lambda h5: h5.__delitem__("test_nsd_ids"), "not a PCA feature file .missing test_nsd_ids"),
    (lambda h5: h5["train_nsd_ids"].__setitem__(slice(None), [3, 5, 5, 9]), "train_nsd_ids must be sorted and unique"),
    (lambda h5: (h5.__delitem__("test"), h5.create_dataset("test", data=np.zeros((2, 4)))),
     "train has 3 columns, test 4"),
    (lambda h5: (h5.__delitem__("train"), h5.create_dataset("train", data=np.zeros((3, 3)))),
     r"train of shape \(3, 3\) for 4 train_nsd_ids"),
])
def test_reader_names_the_file_and_the_fault(tmp_path, rng, change, message):
    _write(tmp_path / "z.h5", rng)
    assert_reader_names_the_fault(tmp_path / "z.h5", change, ReducedFeature.read, message)
