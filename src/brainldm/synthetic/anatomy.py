"""The synthetic subjects' anatomy: a volume in the space of a pycortex subject.

The synthetic betas live in pycortex S1's functional space (its ``fullhead``
transform, optionally downsampled), so flatmaps of the synthetic data are real
flatmaps. Cortex is pycortex's ``thick`` mask; the NSD ``streams`` labels are
drawn from S1's ROIs (V1-V3 are early visual cortex, FFA and PPA ventral, ...).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np

from ..files import atomic_path

log = logging.getLogger(__name__)

#: NSD ``streams`` label -> the pycortex ROIs (of S1's overlays) that stand in for it.
STREAMS_FROM_ROIS = {
    1: ("V1", "V2", "V3"),
    2: ("OFA",),
    3: ("OPA",),
    4: ("RSC",),
    5: ("FFA", "PPA"),
    6: ("EBA",),
    7: ("IPS",),
}


def downsample_transform(xfm: np.ndarray, affine: np.ndarray, factors) -> tuple[np.ndarray, np.ndarray]:
    """Transform and affine of a volume ``factors`` times coarser per axis.

    pycortex's ``coord`` transform maps surface millimetres to voxel indices;
    a coarse voxel ``c`` covers fine voxels ``f = F c + (F - 1) / 2`` at its centre.

    Returns
    -------
    coarse_xfm, coarse_affine : numpy.ndarray
        4 x 4 matrices.
    """
    factors = np.asarray(factors, dtype=float)
    fine_from_coarse = np.eye(4)
    fine_from_coarse[:3, :3] = np.diag(factors)
    fine_from_coarse[:3, 3] = (factors - 1) / 2
    return np.linalg.inv(fine_from_coarse) @ np.asarray(xfm), np.asarray(affine) @ fine_from_coarse


def _scratch_filestore(cortex, subject: str, directory: str) -> str:
    """Copy a pycortex subject (without cached masks) into a writable filestore."""
    source = Path(cortex.database.default_filestore) / subject
    if not source.is_dir():
        raise FileNotFoundError(
            f"pycortex subject {subject!r} not found in its filestore {source.parent} "
            f"(available: {sorted(cortex.db.subjects)})"
        )
    target = Path(directory) / subject
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("mask_*", "cache"))
    return directory


def build_synthetic_anatomy(
    labels_path: str | os.PathLike,
    transform_dir: str | os.PathLike,
    pycortex_subject: str,
    pycortex_transform: str,
    downsample,
    transform_name: str,
) -> None:
    """Write the label volume and the pycortex transform of the synthetic space.

    Parameters
    ----------
    labels_path : path
        Output NIfTI (int16, X x Y x Z) with NSD ``streams`` labels: -1 outside
        cortex, 0 unlabelled cortex, 1-7 the visual streams.
    transform_dir : path
        Output folder holding ``matrices.xfm`` and ``reference.nii.gz`` in
        pycortex's format, ready to be placed under
        ``<filestore>/<subject>/transforms/<transform_name>/``.
    pycortex_subject, pycortex_transform : str
        The pycortex subject and transform whose space is used (S1, fullhead).
    downsample : sequence of 3 int
        Coarsening factor along x, y and z of the volume.
    transform_name : str
        Name under which the coarse transform is registered.
    """
    import cortex  # imported here: pycortex writes its config on first import

    with tempfile.TemporaryDirectory(prefix="pycortex_store_") as store:
        _scratch_filestore(cortex, pycortex_subject, store)
        original_store = cortex.db.filestore
        cortex.db.filestore = store
        cortex.db.reload_subjects()
        try:
            fine = cortex.db.get_xfm(pycortex_subject, pycortex_transform)
            fine_shape = np.array(fine.reference.shape[:3])
            shape = tuple(int(n) for n in np.ceil(fine_shape / np.asarray(downsample)))
            xfm, affine = downsample_transform(fine.xfm, fine.reference.affine, downsample)
            reference = Path(store) / "reference.nii.gz"
            nib.save(nib.Nifti1Image(np.zeros(shape, np.float32), affine), reference)
            cortex.db.save_xfm(pycortex_subject, transform_name, xfm, xfmtype="coord", reference=str(reference))
            # pycortex returns volumes as (z, y, x); NIfTI arrays are (x, y, z).
            cortex_mask = cortex.db.get_mask(pycortex_subject, transform_name, "thick").T
            labels = np.where(cortex_mask, 0, -1).astype(np.int16)
            rois = sorted({roi for names in STREAMS_FROM_ROIS.values() for roi in names})
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                roi_masks = cortex.utils.get_roi_masks(
                    pycortex_subject, transform_name, roi_list=rois, gm_sampler="thick"
                )
            for label, names in STREAMS_FROM_ROIS.items():
                for name in names:
                    labels[(roi_masks[name].T > 0) & cortex_mask] = label
            saved = Path(store) / pycortex_subject / "transforms" / transform_name
            with atomic_path(transform_dir) as tmp:
                tmp.mkdir()
                for name in ("matrices.xfm", "reference.nii.gz"):
                    shutil.copyfile(saved / name, tmp / name)
                (tmp / "source.json").write_text(
                    json.dumps(
                        {
                            "pycortex_subject": pycortex_subject,
                            "pycortex_transform": pycortex_transform,
                            "downsample": [int(f) for f in downsample],
                        },
                        indent=2,
                        sort_keys=True,
                    )
                )
        finally:
            cortex.db.filestore = original_store
            cortex.db.reload_subjects()
    counts = {int(k): int((labels == k).sum()) for k in np.unique(labels)}
    log.info("synthetic anatomy %s: voxels per label %s", shape, counts)
    with atomic_path(labels_path) as tmp:
        nib.save(nib.Nifti1Image(labels, affine), tmp)
