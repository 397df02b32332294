"""Voxel vectors <-> volumes, and NIfTI maps that load back onto the right voxels."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from brainldm.volume import from_volume, load_map, map_dtype, save_map, to_volume

SHAPE = (7, 5, 4)


@pytest.fixture
def reference(tmp_path):
    affine = np.array([[-1.8, 0, 0, 72], [0, 1.8, 0, -100], [0, 0, 1.8, -60], [0, 0, 0, 1]])
    labels = np.full(SHAPE, -1, np.int16)
    image = nib.Nifti1Image(labels, affine)
    image.header.set_xyzt_units("mm", "sec")
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=1)
    path = tmp_path / "streams.nii.gz"
    nib.save(image, path)
    return path


def test_to_volume_places_values_in_c_order(rng):
    index = np.array([0, 3, 20, 139])
    values = np.array([1.5, -2.0, 3.25, 4.0])
    volume = to_volume(values, index, SHAPE, fill=np.nan)
    assert volume.shape == SHAPE and volume.dtype == np.float64
    assert volume[0, 0, 0] == 1.5 and volume[0, 0, 3] == -2.0 and volume[1, 0, 0] == 3.25 and volume[6, 4, 3] == 4.0
    assert np.isnan(volume).sum() == volume.size - 4
    np.testing.assert_array_equal(from_volume(volume, index), values)


@pytest.mark.parametrize(
    ("values", "fill", "dtype"),
    [
        (np.linspace(-1, 1, 30), 0, np.float32),
        (np.linspace(0, 1, 30) > 0.5, 0, np.uint8),
        (np.arange(30) % 6, 0, np.uint8),
        (np.arange(30) - 300, 0, np.int16),
    ],
)
def test_saved_map_loads_back_onto_the_right_voxels(reference, tmp_path, rng, values, fill, dtype):
    index = np.sort(rng.choice(int(np.prod(SHAPE)), 30, replace=False))
    out = tmp_path / "maps" / "m.nii.gz"
    save_map(values, index, reference, out, fill=fill)
    image = nib.load(out)
    ref = nib.load(reference)
    assert image.shape == SHAPE
    np.testing.assert_array_equal(image.affine, ref.affine)
    assert image.header.get_sform(coded=True)[1] == 1 and image.header.get_qform(coded=True)[1] == 1
    assert image.get_data_dtype() == dtype
    data = image.get_fdata()
    np.testing.assert_allclose(data.reshape(-1)[index], values.astype(np.float32), rtol=1e-7)
    rest = np.ones(data.size, bool)
    rest[index] = False
    assert np.all(data.reshape(-1)[rest] == fill)
    np.testing.assert_array_equal(load_map(out, index), values.astype(dtype))
    assert [p.name for p in out.parent.iterdir()] == ["m.nii.gz"]  # nothing but the map (atomic write)


def test_nan_fill_and_map_dtype(reference, tmp_path):
    save_map(np.array([0.5, 0.25]), np.array([1, 2]), reference, tmp_path / "m.nii.gz", fill=np.nan)
    data = nib.load(tmp_path / "m.nii.gz").get_fdata()
    assert np.isnan(data).sum() == data.size - 2
    assert map_dtype(np.array([True])) == np.uint8
    assert map_dtype(np.array([1, 70000])) == np.int32


def test_bad_voxel_vectors_are_refused(reference, tmp_path):
    with pytest.raises(ValueError, match="selects no voxel"):
        save_map(np.zeros(0), np.zeros(0, int), reference, tmp_path / "m.nii.gz")
    with pytest.raises(ValueError, match="outside the volume"):
        save_map(np.zeros(2), np.array([0, 140]), reference, tmp_path / "m.nii.gz")
    with pytest.raises(ValueError, match="3 values for 2 voxels"):
        to_volume(np.zeros(3), np.array([0, 1]), SHAPE)
    with pytest.raises(ValueError, match="repeated"):
        to_volume(np.zeros(2), np.array([1, 1]), SHAPE)
    assert not (tmp_path / "m.nii.gz").exists()
