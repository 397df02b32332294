"""The files of the GPU stages gathered from the shards of their parts (no torch: CPU jobs).

:func:`brainldm.ldm.features.extract_features` and :func:`brainldm.ldm.reconstruct.reconstruct_images`
compute part ``i`` of ``k`` of their images into fingerprinted shards with a manifest
(:mod:`brainldm.shards`); :func:`gather_features` writes one HDF5 file per feature and
:func:`gather_reconstructions` a subject's PNGs, latents and contact sheet, after checking that
the parts' shards cover every image once and are still the ones the parts wrote. The files do
not depend on ``k``.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from ..files import atomic_path
from ..shards import read_part_manifests, remove_shards
from ..config import section_settings
from ..decoded import DecodedLatent
from ..feature_file import create_feature_file
from .names import METHODS, FeatureSpec, feature_specs, image_name

__all__ = ["check_out_paths", "gather_features", "gather_reconstructions", "contact_sheet"]

log = logging.getLogger(__name__)

def check_out_paths(out_paths: Mapping, names: Sequence[str]) -> None:
    """One output path per configured feature, no other."""
    missing, extra = sorted(set(names) - set(out_paths)), sorted(set(out_paths) - set(names))
    if missing or extra:
        raise ValueError(f"out_paths must have one path per feature; missing {missing}, unexpected {extra}")


def gather_features(part_manifests: Sequence, stimuli_path, out_paths: Mapping, features_config: Mapping | None,
                    ) -> None:
    """Write one file per feature from the shards of every feature job, then remove the shards.

    Parameters
    ----------
    part_manifests : sequence of path
        The manifests of :func:`brainldm.ldm.features.extract_features`, one per part.
    stimuli_path : path
        The stimuli file the parts computed (its ``nsd_ids`` are checked against theirs).
    out_paths : mapping
        Feature name -> output HDF5 path; exactly the configured names.
    features_config : mapping
        ``config["features"]``; ``keep_shards: true`` keeps the shards after the files
        are written (a second copy of every feature; the resume state of the feature jobs).

    Output files
    ------------
    ``features`` float32 ``(n_images, dim)`` in the order of ``nsd_ids`` (the
    stimuli file's sorted 0-based 73k ids), ``nsd_ids``; attributes ``shape``
    (per-image array shape, ``features[i].reshape(shape)``), ``feature``,
    ``kind``, ``model``, ``features_config`` (JSON, defaults filled in, without the
    keys that do not change values), ``stimuli``, ``device``, ``dtype``,
    ``brainldm_version``, ``scheduler`` (class), ``scheduler_config`` (JSON),
    ``shipped_scheduler``; for zc and U-Net features also ``strength``, ``stage``,
    ``step`` (1-based denoising step), ``timestep`` (scheduler timestep of that step),
    ``n_denoising_steps``; for U-Net features ``block``.
    """
    config = section_settings("features", features_config)
    specs = feature_specs(config)
    names = [spec.name for spec in specs]
    check_out_paths(out_paths, names)
    with h5py.File(stimuli_path, "r") as h5:
        nsd_ids = np.asarray(h5["nsd_ids"][()], dtype=np.int64)
    shards, common = read_part_manifests(part_manifests, nsd_ids, names, "feature jobs")
    _assemble(shards, nsd_ids, specs, out_paths, common)
    remove_shards(shards, config["keep_shards"], "features.keep_shards")


def _assemble(shards: list[dict], nsd_ids: np.ndarray, specs: Sequence[FeatureSpec], out_paths: Mapping,
              common: Mapping) -> None:
    """Write one file per feature from the shards (streamed, never all in memory)."""
    n = len(nsd_ids)
    with contextlib.ExitStack() as stack:
        outputs, meta = {}, None
        for shard_entry in shards:
            path, start, stop = shard_entry["path"], shard_entry["start"], shard_entry["stop"]
            with h5py.File(path, "r") as shard:
                shard_meta = json.loads(shard.attrs["meta"])
                if meta is None:
                    meta = shard_meta
                elif shard_meta != meta:
                    raise RuntimeError(f"{path}: steps/timesteps {shard_meta} differ from the first shard's {meta}")
                for spec in specs:
                    source = shard["features"][spec.name]
                    dim = source.shape[1]
                    if spec.name not in outputs:
                        tmp = stack.enter_context(atomic_path(out_paths[spec.name]))
                        h5 = stack.enter_context(h5py.File(tmp, "w"))
                        attrs = {"feature": spec.name, "kind": spec.kind, **common,
                                 "nsd_ids": "0-based 73k ids, sorted, one row of features each"}
                        for key, value in (meta.get(spec.name) or {}).items():
                            if value is not None:
                                attrs[key] = value
                        outputs[spec.name] = create_feature_file(h5, dim, source.dtype, nsd_ids,
                                                                 source.attrs["shape"], attrs)
                    target = outputs[spec.name]
                    if dim != target.shape[1]:
                        raise RuntimeError(f"{path}: feature {spec.name} has {dim} values per image, "
                                           f"expected {target.shape[1]}")
                    # pieces aligned to chunk rows (a chunk is written once), at most 256 MB or one chunk row each
                    rows = target.chunks[0]
                    step = rows * max(1, (1 << 26) // dim // rows)
                    edges = [start, *range((start // step + 1) * step, stop, step), stop]
                    for a, b in zip(edges, edges[1:]):
                        target[a:b] = source[a - start:b - start]
    log.info("wrote %d feature files of %d images", len(specs), n)


def gather_reconstructions(part_manifests, z_path, image_dir, latents_path, settings: dict, stimuli_path=None,
                           sheet_path=None) -> None:
    """The images and latents of a subject's reconstructions from the shards of every part.

    Parameters
    ----------
    part_manifests : sequence of path
        The manifests of :func:`brainldm.ldm.reconstruct.reconstruct_images`, one per part.
    z_path : path
        The decoded z (its ``nsd_ids`` are the test images the parts were to reconstruct).
    image_dir : path
        Output folder of PNGs: ``Xz/<id>.png``, ``Xc/<id>_<sample>.png``, ``Xzc/<id>_<sample>.png``.
    latents_path : path
        Output HDF5 of the final latents (``Xc``, ``Xzc``: (n_images, n_samples, ...)) and
        ``nsd_ids``; attributes ``settings`` (JSON, without the keys that do not change values),
        ``subject``, ``model``, ``scheduler``, ``scheduler_config``, ``shipped_scheduler``.
    settings : dict
        ``config["reconstruction"]``: ``keep_shards: true`` keeps the shards after the files
        are written (the parts' resume state).
    stimuli_path, sheet_path : path, optional
        The stimuli HDF5 and the contact sheet PNG to write (original | Xz | Xc | Xzc).

    The files do not depend on the number of parts.
    """
    settings = section_settings("reconstruction", settings)
    z_ids = DecodedLatent.read(z_path, predictions=False).nsd_ids
    shards, common = read_part_manifests(part_manifests, z_ids, METHODS, "reconstruction jobs")
    image_dir = Path(image_dir)
    with atomic_path(latents_path) as tmp, h5py.File(tmp, "w") as out:
        parts = [h5py.File(shard["path"], "r") for shard in shards]
        try:
            for part in parts:  # the PNGs of every shard into the output folder
                part["png"].visititems(lambda name, item: _write_png(item, image_dir / name)
                                       if isinstance(item, h5py.Dataset) else None)
            for key in ("Xc", "Xzc"):
                out.create_dataset(key, data=np.concatenate([p[key][()] for p in parts]), track_times=False)
            out.create_dataset("nsd_ids", data=z_ids, track_times=False)
        finally:
            for p in parts:
                p.close()
        out.attrs.update(common)
    if sheet_path is not None:
        contact_sheet(stimuli_path, image_dir, z_ids, sheet_path)
    remove_shards(shards, settings["keep_shards"], "reconstruction.keep_shards")


def _write_png(dataset, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(dataset[()].tobytes())


def contact_sheet(stimuli_path, image_dir, nsd_ids, out_path, n_rows: int = 8, tile: int = 128) -> None:
    """A PNG grid: one row per test image, columns original | Xz | Xc | Xzc (first sample)."""
    image_dir = Path(image_dir)
    ids = np.asarray(nsd_ids)[:n_rows]
    sheet = Image.new("RGB", (4 * tile, len(ids) * tile), "white")
    with h5py.File(stimuli_path, "r") as h5:
        stim_ids = h5["nsd_ids"][()]
        for r, nsd_id in enumerate(ids):
            row = int(np.searchsorted(stim_ids, nsd_id))
            tiles = [Image.fromarray(h5["images"][row])]
            tiles += [Image.open(image_dir / image_name(m, nsd_id, 0)) for m in METHODS]
            for col, im in enumerate(tiles):
                sheet.paste(im.convert("RGB").resize((tile, tile), Image.Resampling.LANCZOS), (col * tile, r * tile))
    with atomic_path(out_path) as tmp:
        sheet.save(tmp, format="PNG")
