"""Voxel vectors <-> volumes in a subject's space, and NIfTI maps written atomically.

Voxel vectors carry a ``voxel_index``: flat C-order indices into the (X, Y, Z)
volume of the subject (as written by ingestion). Maps take the affine and header of
a reference NIfTI of that subject (its ``streams.nii.gz``), so they overlay exactly.
"""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np

from .files import atomic_path

__all__ = ["to_volume", "from_volume", "map_dtype", "save_map", "load_map"]


def _check_index(voxel_index: np.ndarray, shape, what: str = "voxel_index") -> np.ndarray:
    index = np.asarray(voxel_index)
    if index.ndim != 1:
        raise ValueError(f"{what} must be a vector, found shape {index.shape}")
    if index.size == 0:
        raise ValueError(f"{what}: the mask selects no voxel (empty voxel index)")
    if not np.issubdtype(index.dtype, np.integer):
        raise ValueError(f"{what} must hold integers, found {index.dtype}")
    size = int(np.prod(shape))
    if index.min() < 0 or index.max() >= size:
        raise ValueError(f"{what} has indices outside the volume {tuple(shape)} (range {index.min()}-{index.max()})")
    if len(np.unique(index)) != len(index):
        raise ValueError(f"{what} has repeated voxels")
    return index


def to_volume(values, voxel_index, shape, fill=0, dtype=None) -> np.ndarray:
    """Place a voxel vector into a volume of ``shape`` (X, Y, Z); ``fill`` elsewhere.

    Parameters
    ----------
    values : array-like
        ``(n_voxels,)``.
    voxel_index : array-like
        ``(n_voxels,)`` flat C-order indices into ``shape``.
    shape : tuple
        The volume's (X, Y, Z).
    fill : scalar
        Value of voxels outside ``voxel_index`` (0, or NaN for float maps).
    dtype : numpy dtype, optional
        Of the volume; the common type of ``values`` and ``fill`` by default.
    """
    values = np.asarray(values)
    index = _check_index(voxel_index, shape)
    if values.shape != index.shape:
        raise ValueError(f"{values.shape[0] if values.ndim else values.shape} values for {len(index)} voxels")
    if dtype is None:
        dtype = np.result_type(values.dtype, np.min_scalar_type(fill) if np.isfinite(fill) else np.float32)
    volume = np.full(int(np.prod(shape)), fill, dtype=dtype)
    volume[index] = values
    return volume.reshape(tuple(int(n) for n in shape))


def from_volume(volume, voxel_index) -> np.ndarray:
    """The voxel vector of ``volume`` at ``voxel_index`` (the inverse of :func:`to_volume`)."""
    volume = np.asarray(volume)
    index = _check_index(voxel_index, volume.shape)
    return volume.reshape(-1)[index]


def map_dtype(values: np.ndarray, fill=0) -> np.dtype:
    """On-disk type of a map: uint8 for masks, uint8/int16 for categorical maps, float32 otherwise."""
    values = np.asarray(values)
    if values.dtype == bool:
        return np.dtype(np.uint8)
    if np.issubdtype(values.dtype, np.integer):
        low = min(int(values.min()) if values.size else 0, int(fill))
        high = max(int(values.max()) if values.size else 0, int(fill))
        if low >= 0 and high <= 255:
            return np.dtype(np.uint8)
        if low >= -32768 and high <= 32767:
            return np.dtype(np.int16)
        return np.dtype(np.int32)
    return np.dtype(np.float32)


def save_map(values, voxel_index, reference_nifti_path, out_path, fill=0, description: str | None = None) -> None:
    """Write a voxel vector as a NIfTI map on the reference's grid, atomically.

    The map has the reference's shape, affine and header (sform/qform codes, units)
    with its own data type (see :func:`map_dtype`) and no intensity scaling, so that
    ``nib.load(out_path).get_fdata().ravel()[voxel_index]`` gives ``values`` back
    (exactly for masks and categories, to float32 precision for maps).

    Parameters
    ----------
    values : array-like
        ``(n_voxels,)`` float, integer or boolean.
    voxel_index : array-like
        Flat C-order indices into the reference's (X, Y, Z) volume.
    reference_nifti_path : path
        A 3-D NIfTI of the subject's space (e.g. its ``streams.nii.gz``).
    out_path : path
        Output ``.nii.gz`` (or ``.nii``).
    fill : scalar
        Value outside ``voxel_index``.
    description : str, optional
        Stored in the header's ``descrip`` field (at most 80 characters).
    """
    reference = nib.load(os.fspath(reference_nifti_path))
    shape = reference.shape[:3]
    if len(reference.shape) != 3 and not (len(reference.shape) == 4 and reference.shape[3] == 1):
        raise ValueError(f"{reference_nifti_path}: reference must be a 3-D volume, found shape {reference.shape}")
    values = np.asarray(values)
    dtype = map_dtype(values, fill)
    try:
        volume = to_volume(values.astype(dtype) if values.dtype == bool else values, voxel_index, shape, fill, dtype=dtype)
    except ValueError as exc:
        raise ValueError(f"map for {out_path} on the grid of {reference_nifti_path}: {exc}") from exc
    header = reference.header.copy()
    header.set_data_dtype(dtype)
    header.set_slope_inter(1.0, 0.0)
    if description:
        header["descrip"] = description[:80].encode("ascii", "replace")
    image = nib.Nifti1Image(volume, reference.affine, header)
    finite = volume[np.isfinite(volume)] if volume.dtype.kind == "f" else volume
    image.header["cal_min"] = float(finite.min()) if finite.size else 0.0
    image.header["cal_max"] = float(finite.max()) if finite.size else 0.0
    with atomic_path(out_path) as tmp:
        nib.save(image, tmp)


def load_map(path, voxel_index=None) -> np.ndarray:
    """A map's volume (X, Y, Z), or its values at ``voxel_index`` when given."""
    image = nib.load(os.fspath(path))
    data = np.asarray(image.dataobj)
    return data if voxel_index is None else from_volume(data, voxel_index)
