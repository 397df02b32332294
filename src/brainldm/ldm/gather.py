"""Feature files gathered from the shards of one or more feature jobs (no torch: a CPU job).

:func:`brainldm.ldm.features.extract_features` computes part ``i`` of ``k`` of the images
into fingerprinted shards and writes a manifest (JSON) of them; :func:`gather_features`
checks that the manifests of all ``k`` parts cover every image of the stimuli file once,
with shards that are still the ones the parts wrote, and writes one HDF5 file per feature.
The files do not depend on ``k``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np

from ..io import atomic_path
from ..shards import fingerprint, shard_is_complete
from .names import FeatureSpec, feature_specs, with_defaults

__all__ = ["part_shards", "write_part_manifest", "check_out_paths", "gather_features"]

log = logging.getLogger(__name__)

#: Columns per chunk of a merged feature file (64 KB of a row).
_MERGED_CHUNK_COLS = 16384


def _merged_chunks(n_rows: int, dim: int) -> tuple[int, int]:
    """HDF5 chunks of a merged feature file: about 4 MB of float32, up to 16,384 columns wide.

    Written by rows (64 rows of a U-Net feature per chunk row), read by
    :mod:`brainldm.reduce` in column blocks: HDF5 reads whole chunks, so
    chunks of whole rows would make every column block read the whole file.
    """
    cols = max(1, min(dim, _MERGED_CHUNK_COLS))
    return max(1, min(n_rows, (1 << 20) // cols)), cols


def part_shards(n_shards: int, part: int, n_parts: int) -> range:
    """Shards of part ``part`` of ``n_parts``: the ``part``-th of ``n_parts`` contiguous runs (maybe empty)."""
    return range(part * n_shards // n_parts, (part + 1) * n_shards // n_parts)


def _ids_digest(nsd_ids: np.ndarray) -> str:
    return fingerprint("nsd_ids", np.asarray(nsd_ids, dtype=np.int64))


def write_part_manifest(path, part: tuple[int, int], shard_dir, nsd_ids: np.ndarray, names: Sequence[str],
                        shards: list[dict], common: Mapping) -> None:
    """The manifest of one feature job: which shards it made (with their fingerprints) and for which images.

    ``common``: the attributes every feature file records (model, configuration, device...).
    """
    manifest = {
        "part": int(part[0]), "parts": int(part[1]), "shard_dir": os.fspath(shard_dir),
        "n_images": int(len(nsd_ids)), "nsd_ids": _ids_digest(nsd_ids), "features": list(names),
        "shards": shards, "common": dict(common),
    }
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(manifest, indent=1, sort_keys=True, default=str))


def _read_manifests(paths: Sequence, nsd_ids: np.ndarray, names: list[str], stimuli_path) -> tuple[list, dict]:
    """The shards of all parts in image order, and the common attributes; every disagreement is named."""
    manifests = [(os.fspath(p), json.loads(Path(p).read_text())) for p in paths]
    first_path, first = manifests[0]
    n_parts = first["parts"]
    found = sorted(m["part"] for _, m in manifests)
    if found != list(range(n_parts)):
        raise ValueError(f"feature job manifests {[p for p, _ in manifests]}: expected parts 0-{n_parts - 1}, "
                         f"found {found}")
    shards = []
    for path, manifest in manifests:
        for key, expected in (("parts", n_parts), ("common", first["common"])):
            if manifest[key] != expected:
                raise ValueError(f"{path}: {key} {manifest[key]!r} differ from {first_path}'s {expected!r} "
                                 "(parts made by different runs or settings: rerun the feature jobs)")
        if manifest["n_images"] != len(nsd_ids) or manifest["nsd_ids"] != _ids_digest(nsd_ids):
            raise ValueError(f"{path}: made for other images than {stimuli_path} holds ({manifest['n_images']} "
                             f"images, {len(nsd_ids)} now): rerun the feature jobs")
        if manifest["features"] != names:
            raise ValueError(f"{path}: features {manifest['features']} but the configuration asks for {names}")
        shards += [dict(shard, path=Path(manifest["shard_dir"]) / shard["file"]) for shard in manifest["shards"]]
    shards.sort(key=lambda shard: shard["start"])
    edges = [0] + [shard["stop"] for shard in shards]
    if [shard["start"] for shard in shards] != edges[:-1] or edges[-1] != len(nsd_ids):
        raise ValueError(f"the shards of {[p for p, _ in manifests]} do not cover images 0-{len(nsd_ids) - 1} "
                         "exactly once")
    for shard in shards:
        if not shard_is_complete(shard["path"], shard["fingerprint"], nsd_ids[shard["start"]:shard["stop"]]):
            raise ValueError(f"{shard['path']}: missing or not the shard its feature job wrote "
                             "(removed or overwritten since): rerun the feature jobs")
    return shards, first["common"]


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
    config = with_defaults(features_config)
    specs = feature_specs(config)
    names = [spec.name for spec in specs]
    check_out_paths(out_paths, names)
    with h5py.File(stimuli_path, "r") as h5:
        nsd_ids = np.asarray(h5["nsd_ids"][()], dtype=np.int64)
    shards, common = _read_manifests(part_manifests, nsd_ids, names, stimuli_path)
    _assemble(shards, nsd_ids, specs, out_paths, common)
    if not config["keep_shards"]:
        for shard in shards:
            with contextlib.suppress(FileNotFoundError):
                shard["path"].unlink()
        log.info("removed the %d shards (features.keep_shards: false)", len(shards))


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
                        h5.create_dataset("features", shape=(n, dim), dtype=source.dtype,
                                          chunks=_merged_chunks(n, dim))
                        h5.create_dataset("nsd_ids", data=nsd_ids)
                        attrs = {"shape": np.asarray(source.attrs["shape"], dtype=np.int64), "feature": spec.name,
                                 "kind": spec.kind, **common,
                                 "nsd_ids": "0-based 73k ids, sorted, one row of features each"}
                        for key, value in (meta.get(spec.name) or {}).items():
                            if value is not None:
                                attrs[key] = value
                        h5.attrs.update(attrs)
                        outputs[spec.name] = h5
                    target = outputs[spec.name]["features"]
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
