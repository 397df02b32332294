"""Model folders laid out as the hub ships Stable Diffusion checkpoints, at the tiny preset's widths.

What is copied from the published checkpoints (``tests/data/hub/<owner>--<name>/``, the
repositories' own ``model_index.json`` and ``scheduler/scheduler_config.json``, verbatim):
the pipeline and component classes (``PNDMScheduler`` for SD 1.4, 1.5 and 2.1-base, DDIM with
``v_prediction`` for SD 2.1; ``safety_checker`` and ``feature_extractor`` named by SD 1.x,
``CLIPFeatureExtractor`` by SD 1.5, ``[null, null]`` safety checker for SD 2.x) and the noise
schedules. The structural keys of their ``unet/`` and ``text_encoder/`` configs that differ from
SD 1.x are kept too (SD 2.x: ``use_linear_projection``, per-block head counts, ``upcast_attention``
for 2.1, a 1024-d text encoder with GELU, 768 / 512 px sample sizes); widths and depths are the
tiny preset's, weights random. Weight files come in the three forms users download: safetensors,
``.bin`` only, or ``*.fp16.safetensors`` only.
"""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from brainldm.synthetic.tiny_sd import PRESETS, build_pipeline, derive_preset

DATA = Path(__file__).resolve().parent / "data" / "hub"

# SD 2.x differs from SD 1.x in these keys of unet/config.json and text_encoder/config.json
# (stabilityai/stable-diffusion-2-1{,-base}); head counts scaled to the tiny widths (head dim 16).
_SD2_TEXT = {"hidden_size": 1024, "num_attention_heads": 16, "hidden_act": "gelu", "projection_dim": 512,
             "intermediate_size": 1024, "num_hidden_layers": 1}
_SD2_UNET = {"use_linear_projection": True, "attention_head_dim": (2, 4, 8, 8), "cross_attention_dim": None}


@dataclass(frozen=True)
class Checkpoint:
    """One hub checkpoint's layout: its published files, structural overrides and weight format."""

    repo_id: str
    weights: str = "safetensors"  # "safetensors", "bin" or "fp16" (only *.fp16.safetensors)
    overrides: dict = field(default_factory=dict)

    @property
    def published(self) -> Path:
        return DATA / self.repo_id.replace("/", "--")

    def scheduler_config(self) -> dict:
        return json.loads((self.published / "scheduler" / "scheduler_config.json").read_text())


CHECKPOINTS = {
    "sd14": Checkpoint("CompVis/stable-diffusion-v1-4"),
    "sd14_fp16_only": Checkpoint("CompVis/stable-diffusion-v1-4", weights="fp16"),
    "sd15_bin_only": Checkpoint("stable-diffusion-v1-5/stable-diffusion-v1-5", weights="bin"),
    "sd21": Checkpoint("stabilityai/stable-diffusion-2-1", overrides={
        "text_encoder": _SD2_TEXT, "unet": {**_SD2_UNET, "upcast_attention": True, "sample_size": 96},
        "vae": {"sample_size": 768}}),
    "sd21_base": Checkpoint("stabilityai/stable-diffusion-2-1-base", overrides={
        "text_encoder": _SD2_TEXT, "unet": {**_SD2_UNET, "upcast_attention": False, "sample_size": 64},
        "vae": {"sample_size": 512}}),
}


def build_checkpoint(name: str, out: Path, captions: list[str], seed: int = 0,
                     scheduler_config: dict | None = None) -> Path:
    """Write checkpoint ``name`` of :data:`CHECKPOINTS` into ``out``; return ``out``.

    ``scheduler_config`` replaces the published scheduler config (same weights, another sampler).
    """
    checkpoint = CHECKPOINTS[name]
    spec = derive_preset(copy.deepcopy(PRESETS["tiny"]), checkpoint.overrides)
    pipe = build_pipeline(spec, captions, seed)
    if checkpoint.weights == "fp16":
        pipe.to(torch.float16).save_pretrained(out, variant="fp16")
    else:
        pipe.save_pretrained(out, safe_serialization=checkpoint.weights == "safetensors")
    shutil.copyfile(checkpoint.published / "model_index.json", out / "model_index.json")
    config = scheduler_config if scheduler_config is not None else checkpoint.scheduler_config()
    (out / "scheduler" / "scheduler_config.json").write_text(json.dumps(config, indent=2))
    index = json.loads((out / "model_index.json").read_text())
    if scheduler_config is not None:  # diffusers takes the scheduler class from model_index.json
        index["scheduler"] = ["diffusers", config["_class_name"]]
        (out / "model_index.json").write_text(json.dumps(index, indent=2))
    # The published folders hold these components' files too; the pipeline must never load them.
    if index.get("feature_extractor", [None])[0]:
        (out / "feature_extractor").mkdir(exist_ok=True)
        (out / "feature_extractor" / "preprocessor_config.json").write_text(json.dumps(
            {"crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
             "image_processor_type": "CLIPImageProcessor", "resample": 3, "size": 224}))
    if index.get("safety_checker", [None])[0]:
        (out / "safety_checker").mkdir(exist_ok=True)
        (out / "safety_checker" / "config.json").write_text(json.dumps(
            {"architectures": ["StableDiffusionSafetyChecker"], "model_type": "clip"}))
    return out
