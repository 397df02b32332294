"""What a local Stable Diffusion folder (diffusers layout) must hold, checked without torch.

A download from the hub (``CompVis/stable-diffusion-v1-4``, ``stable-diffusion-v1-5/stable-diffusion-v1-5``,
``stabilityai/stable-diffusion-2-1-base``, ...) has one folder per component named in
``model_index.json``. Weights come as ``diffusion_pytorch_model.safetensors`` (diffusers
models) or ``model.safetensors`` (transformers models), as the older ``.bin`` files, and as
variants such as ``*.fp16.safetensors``; many users download only one of these. The check
runs before any model is loaded (and is cheap enough for the DAG build), and its message
lists the weight files that are there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["ModelFolderError", "looks_like_local_path", "weight_files", "check_model_folder"]

#: Components the pipeline never loads (passed as None): their folders may be absent.
DISABLED_COMPONENTS = ("safety_checker", "feature_extractor", "image_encoder")
#: Weight files of a component: diffusers models and transformers models, whole or sharded (``*.index.json``).
WEIGHT_NAMES = {"diffusers": ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"),
                "transformers": ("model.safetensors", "pytorch_model.bin")}
_FORMAT_TOKENS = {"safetensors", "bin", "index", "json"}


class ModelFolderError(FileNotFoundError):
    """A local model folder lacks a file the pipeline needs; the message names it and what is there."""


def looks_like_local_path(model: str | os.PathLike) -> bool:
    """True for a path, False for a hub id (``name`` or ``owner/name``)."""
    if isinstance(model, os.PathLike):
        return True
    s = str(model)
    return os.path.isabs(s) or s.startswith((".", "~")) or s.count("/") > 1 or "\\" in s


def weight_files(folder: str | os.PathLike) -> list[str]:
    """Weight files (``*.safetensors``, ``*.bin``, ``*.ckpt``) under ``folder``, relative, sorted."""
    folder = Path(folder)
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and p.name.endswith((".safetensors", ".bin", ".ckpt")))


def _has_weights(component: Path, library: str, variant: str | None) -> bool:
    """A weight file of ``library``'s names in ``component``, of ``variant`` (or plain when None)."""
    stems = tuple(name.split(".")[0] for name in WEIGHT_NAMES.get(library, ()))
    for path in component.iterdir():
        name = path.name
        if not (path.is_file() and name.startswith(stems) and name.endswith((".safetensors", ".bin", ".json"))):
            continue
        if name.endswith(".json") and ".index" not in name:
            continue
        tokens = set(name.split(".")[1:])
        if (variant in tokens) if variant else tokens <= _FORMAT_TOKENS:
            return True
    return False


def check_model_folder(folder: str | os.PathLike, variant: str | None = None) -> dict:
    """Check a local diffusers folder before loading it; return its ``model_index.json``.

    Parameters
    ----------
    folder : path
        The model folder.
    variant : str, optional
        Weight variant (``"fp16"``: ``*.fp16.safetensors``), as ``from_pretrained(variant=...)``.

    Raises
    ------
    ModelFolderError
        The folder, ``model_index.json``, a component folder or a component's weights
        (of the requested variant) is missing. The message names what was expected and
        lists the weight files found, so a folder of only ``*.fp16.*`` files points at
        ``model_loading.variant: fp16``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFolderError(f"model folder not found: {folder}")
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise ModelFolderError(f"model_index.json missing in model folder {folder} (expected a diffusers layout)")
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelFolderError(f"{index_path}: not valid JSON ({exc})") from None
    for name, value in index.items():
        if name.startswith("_") or name in DISABLED_COMPONENTS:
            continue
        # Components are ["library", "ClassName"]; [null, null] entries are absent by design.
        if not (isinstance(value, list) and len(value) == 2 and value[0] is not None):
            continue
        library, class_name = value
        component = folder / name
        if not component.is_dir():
            raise ModelFolderError(f"{folder}: component {name!r} ({library}.{class_name}) missing: no folder {component}")
        # Models have a config.json beside their weights; schedulers and tokenizers have no weights.
        needs_weights = library in WEIGHT_NAMES and (component / "config.json").is_file()
        if needs_weights and not _has_weights(component, library, variant):
            infix = f".{variant}" if variant else ""
            expected = [n.replace(".", f"{infix}.", 1) for n in WEIGHT_NAMES[library]]
            found = weight_files(folder)
            hint = ""
            variants = sorted({f.split(".")[-2] for f in found if f.count(".") >= 2 and not f.endswith(".index.json")})
            if variants and not variant:
                hint = f"; the folder holds variant weights: set model_loading.variant to one of {variants}"
            elif variant:
                hint = "; set model_loading.variant to null for the plain weights" if found else ""
            raise ModelFolderError(
                f"{component}: no weights for {name!r}"
                + (f" of variant {variant!r}" if variant else "")
                + f" (expected {' or '.join(expected)}); weight files found: {found or 'none'}{hint}"
            )
    return index
