"""The images evaluation compares: originals from the stimuli file, reconstructions from PNGs."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError

from ..files import rows_of_ids
from ..ldm.names import METHODS, image_name


class EvaluationInputError(ValueError):
    """An input of the evaluation is missing, unreadable or inconsistent."""


def read_test_ids(path: str | os.PathLike) -> np.ndarray:
    """0-based 73k ids of the test images (column ``nsd_id`` of ``test_images.tsv``)."""
    table = pd.read_csv(path, sep="\t")
    if "nsd_id" not in table.columns or table.empty:
        raise EvaluationInputError(f"{path}: expected a non-empty column 'nsd_id' of test image ids")
    return table["nsd_id"].to_numpy(dtype=np.int64)


def load_originals(stimuli_path: str | os.PathLike, nsd_ids) -> np.ndarray:
    """uint8 RGB originals (n, H, W, 3) of ``nsd_ids`` from the stimuli HDF5 (``images``, ``nsd_ids``)."""
    with h5py.File(stimuli_path, "r") as h5:
        rows = rows_of_ids(h5["nsd_ids"][()], np.asarray(nsd_ids), stimuli_path)
        unique_rows, order = np.unique(rows, return_inverse=True)  # one read of increasing rows
        return h5["images"][unique_rows][order.reshape(-1)]


def method_samples(method: str, n_samples: int) -> range:
    """Samples a method has: Xz is deterministic (one), Xc and Xzc have ``n_samples``."""
    return range(1) if method == "Xz" else range(n_samples)


def reconstruction_files(image_dir, nsd_ids, n_samples: int) -> dict[tuple[str, int], list[Path]]:
    """PNG of every (method, sample) for every test image, in ``nsd_ids`` order.

    Raises
    ------
    EvaluationInputError
        Naming, per method, the test images whose reconstruction is absent.
    """
    image_dir = Path(image_dir)
    files, missing = {}, {}
    for method in METHODS:
        for sample in method_samples(method, n_samples):
            paths = [image_dir / image_name(method, i, sample) for i in nsd_ids]
            files[method, sample] = paths
            for nsd_id, path in zip(nsd_ids, paths):
                if not path.is_file():
                    missing.setdefault(method, []).append((int(nsd_id), path))
    if missing:
        lines = [f"{method}: {len(absent)} files, e.g. {absent[0][1]} (73k ids {sorted({i for i, _ in absent})[:10]})"
                 for method, absent in missing.items()]
        raise EvaluationInputError(f"{image_dir}: reconstructions missing for some of the {len(nsd_ids)} test images:\n  "
                                   + "\n  ".join(lines))
    return files


def read_images(paths) -> np.ndarray:
    """uint8 RGB images (B, H, W, 3) from image files of one size.

    Raises
    ------
    EvaluationInputError
        A file is unreadable (naming it), or the files differ in size.
    """
    images = []
    for path in paths:
        try:
            with Image.open(path) as image:
                images.append(np.asarray(image.convert("RGB")))
        except (OSError, UnidentifiedImageError) as exc:
            raise EvaluationInputError(f"{path}: unreadable image file ({exc})") from None
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise EvaluationInputError(f"images of different sizes {sorted(shapes)} among {[str(p) for p in paths][:5]}")
    return np.stack(images)


def resize_images(images: np.ndarray, size: int, interpolation: str = "bilinear", device="cpu") -> torch.Tensor:
    """uint8 RGB images (B, H, W, 3) -> float (B, 3, size, size) in [0, 1] (antialiased, as PIL)."""
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    batch = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float() / 255.0
    return F.resize(batch, [size, size], interpolation=InterpolationMode(interpolation), antialias=True).clamp(0, 1)
