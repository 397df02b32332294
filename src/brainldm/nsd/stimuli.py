"""Stimulus images (rows of ``imgBrick``) and their COCO captions."""

from __future__ import annotations

import json
import logging
import os

import h5py
import numpy as np
import pandas as pd

from ..files import atomic_path
from ..errors import NSDInputError
from .layout import CAPTIONS_SOURCE

log = logging.getLogger(__name__)


def read_stim_info(path: str | os.PathLike) -> pd.DataFrame:
    """``nsd_stim_info_merged.csv`` indexed by 0-based 73k id."""
    if not os.path.exists(path):
        raise NSDInputError(f"{path}: stimulus table not found (expected nsd_stim_info_merged.csv)")
    info = pd.read_csv(path, index_col=0)
    missing = [c for c in ("cocoId", "cocoSplit") if c not in info.columns]
    if missing:
        raise NSDInputError(f"{path}: expected columns cocoId and cocoSplit, missing {missing}")
    return info


def captions_by_image(stim_info: pd.DataFrame, caption_files: dict[str, str], nsd_ids) -> dict[int, list[str]]:
    """All captions of each image, looked up by ``cocoId`` in the file of its ``cocoSplit``.

    Each caption file is read once, whatever the number of images.

    Parameters
    ----------
    stim_info : pandas.DataFrame
        From :func:`read_stim_info`.
    caption_files : dict
        COCO split (``train2017``, ``val2017``) -> caption json.
    nsd_ids : iterable of int
        0-based 73k ids.
    """
    nsd_ids = [int(i) for i in nsd_ids]
    absent = [i for i in nsd_ids if i not in stim_info.index]
    if absent:
        raise NSDInputError(f"73k ids {absent[:10]} absent from nsd_stim_info_merged.csv ({len(absent)} in all)")
    wanted = stim_info.loc[nsd_ids, ["cocoId", "cocoSplit"]]
    by_coco: dict[tuple[str, int], list[str]] = {}
    for split in sorted(set(wanted["cocoSplit"])):
        path = caption_files.get(split)
        if path is None or not os.path.exists(path):
            raise NSDInputError(f"{path}: captions of split {split!r} needed, file not found. {CAPTIONS_SOURCE}")
        with open(path) as handle:
            try:
                annotations = json.load(handle)
            except json.JSONDecodeError as exc:
                raise NSDInputError(f"{path}: expected COCO's caption JSON, found invalid JSON ({exc}); "
                                    "download it again") from None
        if not isinstance(annotations, dict) or not isinstance(annotations.get("annotations"), list):
            found = sorted(annotations) if isinstance(annotations, dict) else type(annotations).__name__
            raise NSDInputError(f"{path}: expected COCO's caption JSON with a list 'annotations', found {found}")
        annotations = annotations["annotations"]
        needed = set(wanted.loc[wanted["cocoSplit"] == split, "cocoId"].astype(int))
        for ann in annotations:
            if ann["image_id"] in needed:
                by_coco.setdefault((split, ann["image_id"]), []).append(ann["caption"].strip())
    out = {}
    for nsd_id, (coco_id, split) in zip(nsd_ids, wanted.itertuples(index=False)):
        captions = by_coco.get((split, int(coco_id)))
        if not captions:
            raise NSDInputError(
                f"{caption_files[split]}: no caption for cocoId {coco_id} (73k id {nsd_id})"
            )
        out[nsd_id] = captions
    return out


def extract_stimuli(
    stimuli_path: str | os.PathLike,
    stim_info_path: str | os.PathLike,
    caption_files: dict[str, str],
    nsd_ids,
    out_path: str | os.PathLike,
) -> None:
    """Write the images and captions of ``nsd_ids`` (sorted) to one HDF5 file.

    Images are copied row by row: the brick is never held in memory.
    Output: ``images`` (n, H, W, 3) uint8, ``nsd_ids``, ``captions`` (n, k)
    strings padded with "", ``n_captions``.
    """
    nsd_ids = np.unique(np.asarray(nsd_ids, dtype=np.int64))
    captions = captions_by_image(read_stim_info(stim_info_path), caption_files, nsd_ids)
    width = max(len(c) for c in captions.values())
    table = np.array([captions[i] + [""] * (width - len(captions[i])) for i in nsd_ids], dtype=object)
    if not os.path.exists(stimuli_path):
        raise NSDInputError(f"{stimuli_path}: stimulus brick not found (expected nsd_stimuli.hdf5)")
    try:
        source = h5py.File(stimuli_path, "r")
    except OSError as exc:
        raise NSDInputError(f"{stimuli_path}: unreadable HDF5 file (truncated?): {exc}") from exc
    with source, atomic_path(out_path) as tmp, h5py.File(tmp, "w") as out:
        if "imgBrick" not in source:
            raise NSDInputError(f"{stimuli_path}: expected a dataset 'imgBrick', found {list(source)}")
        brick = source["imgBrick"]
        if nsd_ids.size and nsd_ids[-1] >= brick.shape[0]:
            raise NSDInputError(
                f"{stimuli_path}: 73k id {int(nsd_ids[-1])} absent from imgBrick ({brick.shape[0]} images)"
            )
        images = out.create_dataset("images", shape=(len(nsd_ids),) + brick.shape[1:], dtype=brick.dtype,
                                    chunks=(1,) + brick.shape[1:], track_times=False)
        for row, nsd_id in enumerate(nsd_ids):
            images[row] = brick[nsd_id]
        out.create_dataset("nsd_ids", data=nsd_ids, track_times=False)
        out.create_dataset("captions", data=table.astype(h5py.string_dtype()), track_times=False)
        out.create_dataset("n_captions", data=[len(captions[i]) for i in nsd_ids], track_times=False)
        out.attrs["nsd_ids"] = "0-based 73k ids, sorted"
    log.info("wrote %d images and %d captions to %s", len(nsd_ids), sum(map(len, captions.values())), out_path)
