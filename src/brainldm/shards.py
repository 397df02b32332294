"""Resumable shards: a long job writes its work in shards, each fingerprinted by everything that made it.

A shard is an HDF5 file written atomically, with attributes ``complete`` and ``fingerprint``
(a SHA-256 of the model, the settings that change values and the inputs of its rows) and a
dataset ``nsd_ids``. A rerun keeps a shard only if all three match, so a killed run resumes
where it stopped, and a changed seed, model or input recomputes instead of mixing old and new.

The work of one stage may be split into parts (each its own job, e.g. one GPU each): part ``i``
of ``k`` computes the ``i``-th contiguous run of shards and writes a manifest (JSON) of them
(:func:`write_part_manifest`); the gathering job reads every part's manifest, checks that the
shards cover the images exactly once and are still the ones the parts wrote
(:func:`read_part_manifests`), writes the stage's files, and removes the shards
(:func:`remove_shards`) unless told to keep them. Used by the features and the reconstructions.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np

from .files import atomic_path

__all__ = ["fingerprint", "shard_is_complete", "mark_complete", "clean_partial_shards", "part_shards",
           "write_part_manifest", "read_part_manifests", "remove_shards"]

log = logging.getLogger(__name__)


def fingerprint(base, *arrays) -> str:
    """SHA-256 of ``base`` (JSON-able) and the bytes of ``arrays`` (each ``np.ascontiguousarray``'d)."""
    digest = hashlib.sha256(json.dumps(base, sort_keys=True, ensure_ascii=True, default=str).encode())
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def shard_is_complete(path: Path, expected: str, ids: np.ndarray) -> bool:
    """Whether ``path`` is a complete shard of exactly these ids with this fingerprint (logged when not)."""
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as h5:
            if not h5.attrs.get("complete", False) or h5.attrs.get("fingerprint") != expected:
                log.warning("%s: made by another model, configuration or input; recomputing it", path)
                return False
            if not np.array_equal(h5["nsd_ids"][()], ids):
                log.warning("%s: holds other images; recomputing it", path)
                return False
            return True
    except (OSError, KeyError) as exc:
        log.warning("%s: unreadable (%s); recomputing it", path, exc)
        return False


def mark_complete(h5: h5py.File, expected: str) -> None:
    """Last step of writing a shard (inside its atomic write)."""
    h5.attrs["fingerprint"] = expected
    h5.attrs["complete"] = True


def clean_partial_shards(shard_dir: Path, numbers) -> None:
    """Remove the temporary files of shards ``numbers`` left by a killed run (``atomic_path``'s
    ``.shard_<number>.*.part.h5``). Only a part's own shards: other parts may be writing theirs."""
    for number in numbers:
        for stale in Path(shard_dir).glob(f".shard_{number:05d}.*.part.h5"):
            with contextlib.suppress(OSError):
                stale.unlink()


def part_shards(n_shards: int, part: int, n_parts: int) -> range:
    """Shards of part ``part`` of ``n_parts``: the ``part``-th of ``n_parts`` contiguous runs (maybe empty)."""
    if not 0 <= part < n_parts:
        raise ValueError(f"part {part} of {n_parts}: expected 0 <= part < number of parts")
    return range(part * n_shards // n_parts, (part + 1) * n_shards // n_parts)


def _ids_digest(nsd_ids: np.ndarray) -> str:
    return fingerprint("nsd_ids", np.asarray(nsd_ids, dtype=np.int64))


def write_part_manifest(path, part: tuple[int, int], shard_dir, nsd_ids: np.ndarray, contents: Sequence[str],
                        shards: list[dict], common: Mapping) -> None:
    """The manifest of one part: which shards it made (``file``, ``start``, ``stop``, ``fingerprint``)
    of which images (``nsd_ids``: all images of the stage, in order), holding what (``contents``).

    ``common``: what every part must agree on and the gathered files record (model, settings...).
    """
    manifest = {
        "part": int(part[0]), "parts": int(part[1]), "shard_dir": os.fspath(shard_dir),
        "n_images": int(len(nsd_ids)), "nsd_ids": _ids_digest(nsd_ids), "contents": list(contents),
        "shards": shards, "common": dict(common),
    }
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(manifest, indent=1, sort_keys=True, default=str))


def read_part_manifests(paths: Sequence, nsd_ids: np.ndarray, contents: Sequence[str], what: str,
                        ) -> tuple[list[dict], dict]:
    """The shards of all parts in image order (each with its ``path``), and the parts' ``common``.

    Parameters
    ----------
    paths : sequence of path
        One manifest per part, from :func:`write_part_manifest`.
    nsd_ids : array
        The images the parts were to compute, in order.
    contents : sequence of str
        What the shards must hold (the configured features, the reconstruction methods).
    what : str
        The jobs that wrote them, for messages ("feature jobs").

    Raises
    ------
    ValueError
        Parts missing or from different runs or settings, other images, other contents, shards
        that do not cover the images exactly once, or a shard removed or rewritten since.
    """
    manifests = [(os.fspath(p), json.loads(Path(p).read_text())) for p in paths]
    if not manifests:
        raise ValueError(f"no manifests of the {what}")
    first_path, first = manifests[0]
    n_parts = first["parts"]
    found = sorted(m["part"] for _, m in manifests)
    if found != list(range(n_parts)):
        raise ValueError(f"{what} manifests {[p for p, _ in manifests]}: expected parts 0-{n_parts - 1}, found {found}")
    shards = []
    for path, manifest in manifests:
        for key, expected in (("parts", n_parts), ("common", first["common"])):
            if manifest[key] != expected:
                raise ValueError(f"{path}: {key} {manifest[key]!r} differ from {first_path}'s {expected!r} "
                                 f"(parts made by different runs or settings: rerun the {what})")
        if manifest["n_images"] != len(nsd_ids) or manifest["nsd_ids"] != _ids_digest(nsd_ids):
            raise ValueError(f"{path}: made for other images ({manifest['n_images']} images, {len(nsd_ids)} now): "
                             f"rerun the {what}")
        if manifest["contents"] != list(contents):
            raise ValueError(f"{path}: holds {manifest['contents']} but the configuration asks for {list(contents)}")
        shards += [dict(shard, path=Path(manifest["shard_dir"]) / shard["file"]) for shard in manifest["shards"]]
    shards.sort(key=lambda shard: shard["start"])
    edges = [0] + [shard["stop"] for shard in shards]
    if [shard["start"] for shard in shards] != edges[:-1] or edges[-1] != len(nsd_ids):
        raise ValueError(f"the shards of {[p for p, _ in manifests]} do not cover images 0-{len(nsd_ids) - 1} "
                         "exactly once")
    for shard in shards:
        if not shard_is_complete(shard["path"], shard["fingerprint"], nsd_ids[shard["start"]:shard["stop"]]):
            raise ValueError(f"{shard['path']}: missing or not the shard its part wrote "
                             f"(removed or overwritten since): rerun the {what}")
    return shards, first["common"]


def remove_shards(shards: Sequence[Mapping], keep: bool, key: str) -> None:
    """The shards' one lifetime: removed once their stage's files are written, unless ``keep`` (the
    setting ``key``) keeps them as the parts' resume state."""
    if keep:
        log.info("kept the %d shards (%s: true)", len(shards), key)
        return
    for shard in shards:
        with contextlib.suppress(FileNotFoundError):
            Path(shard["path"]).unlink()
    for folder in {Path(shard["path"]).parent for shard in shards}:
        with contextlib.suppress(OSError):  # only when nothing else is left in it
            folder.rmdir()
    log.info("removed the %d shards (%s: false)", len(shards), key)
