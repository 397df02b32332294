"""The decoded-latent file's writer and reader (brainldm.decoded): round trip and the checks of each field."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from brainldm.decoded import DecodedLatent, write_decoded_latent

from conftest import assert_reader_names_the_fault

SHAPE = (4, 3, 3)


def _write(path, rng, ids=(2, 7, 11)):
    latents = rng.normal(size=(len(ids), *SHAPE)).astype(np.float32)
    write_decoded_latent(path, latents, ids, SHAPE, datasets={"best_alphas": np.ones(36)}, attrs={"target": "z"})
    return latents


def test_round_trip(tmp_path, rng):
    latents = _write(tmp_path / "z.h5", rng)
    decoded = DecodedLatent.read(tmp_path / "z.h5")
    assert decoded.shape == SHAPE and decoded.predictions.shape == (3, 36)
    np.testing.assert_array_equal(decoded.predictions.reshape(latents.shape), latents)  # C order, flat
    np.testing.assert_array_equal(decoded.nsd_ids, [2, 7, 11])
    assert DecodedLatent.read(tmp_path / "z.h5", predictions=False).predictions is None
    with h5py.File(tmp_path / "z.h5", "r") as h5:
        assert h5.attrs["target"] == "z" and h5["best_alphas"].shape == (36,)


@pytest.mark.parametrize(("ids", "shape"), [((7, 2, 11), SHAPE), ((2, 7), SHAPE), ((2, 7, 11), (4, 3, 2))])
def test_writer_refuses_what_does_not_fit(tmp_path, rng, ids, shape):
    with pytest.raises(ValueError):
        write_decoded_latent(tmp_path / "z.h5", rng.normal(size=(3, 36)).astype(np.float32), ids, shape)
    assert not (tmp_path / "z.h5").exists()


@pytest.mark.parametrize(("change", "message"), [
    (lambda h5: h5.attrs.__delitem__("shape"), "missing attribute 'shape'"),
    (lambda h5: h5.__delitem__("nsd_ids"), "missing nsd_ids"),
    (lambda h5: h5.attrs.__setitem__("shape", (4, 3, 2)), "36 values per image, but attribute shape"),
    (lambda h5: h5["nsd_ids"].__setitem__(slice(None), [7, 2, 11]), "sorted and unique"),
    (lambda h5: (h5.__delitem__("nsd_ids"), h5.create_dataset("nsd_ids", data=[1, 2])), "for 2 nsd_ids"),
])
def test_reader_names_the_file_and_the_fault(tmp_path, rng, change, message):
    _write(tmp_path / "z.h5", rng)
    assert_reader_names_the_fault(tmp_path / "z.h5", change, DecodedLatent.read, message)
