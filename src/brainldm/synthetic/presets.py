"""Build a randomly initialised Stable Diffusion preset from a caption corpus."""

from __future__ import annotations

import json
import logging
import os
from typing import Iterable

log = logging.getLogger(__name__)


def read_captions(caption_files: Iterable[str | os.PathLike]) -> list[str]:
    """Every caption of a set of COCO caption files, each file read once."""
    captions = []
    for path in caption_files:
        with open(path) as handle:
            captions += [ann["caption"] for ann in json.load(handle)["annotations"]]
    return captions


def build_model(preset: str, caption_files, out_dir, seed: int) -> None:
    """Build preset ``preset`` (see :data:`brainldm.synthetic.tiny_sd.PRESETS`) into ``out_dir``.

    The tokenizer is a BPE trained on the captions, so every word of the corpus
    is one token; the weights are random, seeded by ``seed``.
    """
    from .tiny_sd import build_pipeline, save_pipeline  # torch is imported only here

    captions = read_captions(caption_files)
    log.info("building preset %r from %d captions, seed %d", preset, len(captions), seed)
    pipe = build_pipeline(preset, captions, seed)
    save_pipeline(pipe, out_dir)
    n_params = {name: sum(p.numel() for p in getattr(pipe, name).parameters()) for name in ("unet", "vae", "text_encoder")}
    log.info("saved %s with parameters per component %s", out_dir, n_params)
