"""FLOPs of the paper's GPU stages, counted by torch on SD 1.4's published configs, and their GPU-hours.

The networks are built on torch's ``meta`` device from the component configs the hub ships
(``tests/data/hub/CompVis--stable-diffusion-v1-4``: no weights needed) and run once under
``torch.utils.flop_counter.FlopCounterMode``, which counts the matrix products, convolutions and
attention of every call from the shapes. The calls per image are the pipeline's own: for the
features, the VAE encoder at ``features.image_size``, the text encoder once per caption, and per
noise level ``int(num_inference_steps x strength)`` U-Net calls on the conditional and
unconditional halves (``guidance_scale > 1``); for the reconstructions of a test image, the VAE
decoder for Xz, then per sample text-to-image (every step) and img2img from Xz (``strength`` of the
steps), each ending with the VAE decoder, and the VAE encoder of Xz once per sample.

GPU-hours = FLOPs / (peak x utilisation). The peak is the device's dense float16 tensor rate
(float32 for the ridge stages, which himalaya's torch_cuda backend runs in float32); the
utilisation is an assumption until a device run measures it, and is stated as such.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SD14 = REPO / "tests" / "data" / "hub" / "CompVis--stable-diffusion-v1-4"

#: The paper's settings (the schema's defaults, config.paper.yaml): features and reconstruction.
FEATURES = {"image_size": 320, "num_inference_steps": 50, "strengths": (0.2, 0.5, 0.8), "guidance_scale": 5.0,
            "captions_per_image": 5}
RECONSTRUCTION = {"output_size": 512, "num_inference_steps": 50, "strength": 0.8, "guidance_scale": 5.0,
                  "n_samples": 5}
#: NVIDIA H200 SXM (the device machine of this project), dense rates from its data sheet.
GPU = {"name": "NVIDIA H200 SXM", "fp16_tflops": 989.0, "fp32_tflops": 67.0}
#: Assumed fractions of the peak (no device measurement yet): diffusion inference in batches, and the
#: ridge's float32 products and eigendecompositions.
UTILISATION = {"diffusion": 0.30, "ridge": 0.30}


def _flops(module, *args, **kwargs) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(*args, **kwargs)
    return int(counter.get_total_flops())


def sd14_call_flops(image_size: int, output_size: int) -> dict[str, int]:
    """FLOPs of one call of each SD 1.4 network for one image (the U-Net: both halves of guidance)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    def config(part):
        return json.loads((SD14 / part / "config.json").read_text())

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config("unet"))
        vae = AutoencoderKL.from_config(config("vae"))
        text = CLIPTextModel(CLIPTextConfig(**config("text_encoder")))
    down = 2 ** (len(vae.config.block_out_channels) - 1)
    length = json.loads((SD14 / "tokenizer" / "tokenizer_config.json").read_text())["model_max_length"]
    meta = {"device": "meta"}
    out = {"text_encoder": _flops(text, torch.zeros(1, length, dtype=torch.long, **meta))}
    for name, size in (("features", image_size), ("reconstruction", output_size)):
        side = size // down
        latent = torch.empty(2, unet.config.in_channels, side, side, **meta)
        context = torch.empty(2, length, unet.config.cross_attention_dim, **meta)
        out[f"unet_{name}"] = _flops(unet, latent, torch.tensor([500, 500], **meta), encoder_hidden_states=context)
        out[f"vae_encode_{name}"] = _flops(vae.encode, torch.empty(1, 3, size, size, **meta))
        out[f"vae_decode_{name}"] = _flops(vae.decode, torch.empty(1, vae.config.latent_channels, side, side, **meta))
    return out


def per_image_flops(calls: dict[str, int], features=FEATURES, reconstruction=RECONSTRUCTION) -> dict[str, float]:
    """FLOPs of the features of one stimulus image and of the reconstructions of one test image."""
    unet_calls = sum(int(features["num_inference_steps"] * s) for s in features["strengths"])
    feature = (calls["vae_encode_features"] + features["captions_per_image"] * calls["text_encoder"]
               + unet_calls * calls["unet_features"])
    steps, samples = reconstruction["num_inference_steps"], reconstruction["n_samples"]
    img2img = int(steps * reconstruction["strength"])
    recon = (calls["vae_decode_reconstruction"]  # Xz
             + samples * (steps * calls["unet_reconstruction"] + calls["vae_decode_reconstruction"])  # Xc
             + samples * (calls["vae_encode_reconstruction"] + img2img * calls["unet_reconstruction"]
                          + calls["vae_decode_reconstruction"]))  # Xzc
    return {"features_per_image": float(feature), "reconstruction_per_test_image": float(recon),
            "unet_calls_per_feature_image": unet_calls}


def gpu_hours(flops: float, kind: str, gpu=GPU, utilisation=UTILISATION) -> float:
    """Hours on one GPU for ``flops`` at the assumed utilisation (``kind``: diffusion or ridge)."""
    peak = gpu["fp16_tflops"] if kind == "diffusion" else gpu["fp32_tflops"]
    return flops / (peak * 1e12 * utilisation[kind]) / 3600


def ridge_flops(units: dict[str, float]) -> float:
    """FLOPs of a ridge job from brainldm.costs' work terms (multiply-adds: 2 FLOPs each)."""
    return 2.0 * math.fsum(units.values())
