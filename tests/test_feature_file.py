"""The feature file's layout, writers and reader (brainldm.feature_file): round trip, chunks, checks."""

from __future__ import annotations

import numpy as np
import pytest

from brainldm.feature_file import CHUNK_COLUMNS, FeatureFile, feature_chunks, write_feature_file

from conftest import assert_reader_names_the_fault

SHAPE = (4, 2, 3)


def test_round_trip(tmp_path, rng):
    images = rng.normal(size=(5, *SHAPE)).astype(np.float32)
    write_feature_file(tmp_path / "z.h5", images, [1, 4, 6, 9, 12], attrs={"kind": "z"})
    feature = FeatureFile.read(tmp_path / "z.h5")
    assert feature.shape == SHAPE and feature.n_values == 24 and feature.attrs["kind"] == "z"
    np.testing.assert_array_equal(feature.nsd_ids, [1, 4, 6, 9, 12])
    with feature.features() as data:
        assert data.dtype == np.float32
        np.testing.assert_array_equal(data[2:4].reshape(2, *SHAPE), images[2:4])  # C order, one row per image


def test_chunks_are_about_4_mb_and_at_most_a_row_of_chunk_columns():
    assert feature_chunks(8859, 1_024_000) == (64, CHUNK_COLUMNS)  # U-Net up_blocks.2 of SD 1.4 at 320 px
    assert feature_chunks(8859, 6400) == (163, 6400)
    assert feature_chunks(10, 6400) == (10, 6400)


def test_writer_refuses_ids_that_do_not_fit(tmp_path, rng):
    for ids in ([1, 4, 4], [1, 4]):
        with pytest.raises(ValueError):
            write_feature_file(tmp_path / "z.h5", rng.normal(size=(3, 6)), ids)
    assert not (tmp_path / "z.h5").exists()


@pytest.mark.parametrize(("change", "message"), [
    (lambda h5: h5.attrs.__delitem__("shape"), "missing attribute 'shape'"),
    (lambda h5: h5.__delitem__("features"), "not a feature file .missing features"),
    (lambda h5: h5.attrs.__setitem__("shape", (5, 5)), "24 values per image, but attribute shape"),
    (lambda h5: h5["nsd_ids"].__setitem__(slice(None), [4, 1, 6]), "sorted and unique"),
    (lambda h5: (h5.__delitem__("nsd_ids"), h5.create_dataset("nsd_ids", data=[1, 2])), "for 2 nsd_ids"),
])
def test_reader_names_the_file_and_the_fault(tmp_path, rng, change, message):
    write_feature_file(tmp_path / "z.h5", rng.normal(size=(3, *SHAPE)), [1, 4, 6])
    assert_reader_names_the_fault(tmp_path / "z.h5", change, FeatureFile.read, message)
