"""Names and bookkeeping of the Stable Diffusion features, without torch or diffusers.

The Snakefile imports this module when it builds the DAG (one output file per
feature), so it must stay importable in a fraction of a second: no torch, no
diffusers, no model access. Everything that needs the model (block names that
exist, shapes) is checked in :mod:`brainldm.ldm.features`.

Feature names
-------------
Stable, filesystem-safe (``[A-Za-z0-9_.-]``) and derived only from the
configuration, in this order:

* ``z`` -- VAE latent of the image;
* ``c`` -- text-encoder ``last_hidden_state`` averaged over the image's captions;
* ``zc_s{strength}_t{stage}`` -- img2img latent at noise level ``strength``
  after the fraction ``stage`` of its denoising steps, one per strength (in
  config order) and stage (in config order), e.g. ``zc_s0.8_t0.2``,
  ``zc_s0.8_t1`` (the final latent);
* ``unet_{block}_t{stage}`` -- output of the U-Net block ``block`` (a
  top-level block such as ``down_blocks.1``, ``mid_block``, ``up_blocks.2``)
  during the denoising step of ``stage`` of the img2img run at
  ``unet_strength``, e.g. ``unet_down_blocks.1_t0.66``. The strength is not
  part of the name (there is one such run); it is in the file's attributes.

Numbers are written with ``format_number``: the shortest ``%g`` form that
reads back as the same float (``0.8``, ``0.66``, ``1``).

Stages
------
With ``n`` denoising steps (``int(num_inference_steps * strength)``, as
diffusers computes it: 50 steps at strength 0.8 are 40, never
``int(50 * (1 - 0.8))``), stage fraction ``f`` is the latent after the
1-based step ``k = ceil(f * n)``; stage 1 is the final latent. U-Net
activations of stage ``f`` are those of the U-Net call of that same step
``k`` (the call at timestep ``scheduler.timesteps`` of step ``k``, whose noise
prediction produces that latent).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..config import section_settings

__all__ = [
    "METHODS",
    "image_name",
    "FeatureSpec",
    "format_number",
    "denoising_steps",
    "stage_step",
    "img2img_strengths",
    "feature_specs",
    "feature_names",
    "storage_dtype",
    "zc_over_noise",
    "zc_over_stages",
    "banded_zc",
    "unet_stages",
]

#: Reconstructions (paper Figures 1, 3, 4): decoded z, text-to-image from decoded c, img2img from both.
METHODS = ("Xz", "Xc", "Xzc")


def image_name(method: str, nsd_id: int, sample: int) -> str:
    """File name of one reconstruction (PNG) inside a subject's image folder."""
    return f"{method}/{int(nsd_id):05d}_{sample}.png" if method != "Xz" else f"Xz/{int(nsd_id):05d}.png"



@dataclass(frozen=True)
class FeatureSpec:
    """One feature: its file name and what it is.

    ``kind`` is ``"z"``, ``"c"``, ``"zc"`` or ``"unet"``; ``strength`` and
    ``stage`` are set for ``zc`` and ``unet``, ``block`` for ``unet``.
    """

    name: str
    kind: str
    strength: float | None = None
    stage: float | None = None
    block: str | None = None


def format_number(value: float) -> str:
    """Shortest ``%g`` form of ``value`` that reads back as the same float (``0.8``, ``1``)."""
    value = float(value)
    for digits in range(6, 18):
        text = f"{value:.{digits}g}"
        if float(text) == value:
            return text
    return repr(value)  # pragma: no cover - %.17g always round-trips


def denoising_steps(num_inference_steps: int, strength: float) -> int:
    """Number of img2img denoising steps, as diffusers computes it: ``min(int(n * s), n)``.

    Raises
    ------
    ValueError
        If no step is left (``n * s < 1``).
    """
    n = min(int(num_inference_steps * strength), num_inference_steps)
    if n < 1:
        raise ValueError(
            f"strength {strength} with num_inference_steps {num_inference_steps} leaves no denoising step"
        )
    return n


def stage_step(stage: float, n_denoise: int) -> int:
    """1-based denoising step of stage fraction ``stage``: ``ceil(stage * n_denoise)``.

    The product is rounded to 9 decimals first, so that ``0.35 * 20``
    (``7.000000000000001`` in floating point) gives step 7, not 8.
    """
    if not 0 < stage <= 1:
        raise ValueError(f"stage {stage} is not in (0, 1]")
    return max(1, min(n_denoise, math.ceil(round(stage * n_denoise, 9))))


def img2img_strengths(config: Mapping) -> list[float]:
    """Strengths of the img2img runs needed: ``strengths``, plus ``unet_strength`` if U-Net blocks are asked.

    None without stages (no zc or U-Net feature is then defined).
    """
    if not config["stages"]:
        return []
    strengths = [float(s) for s in config["strengths"]]
    if config["unet_blocks"] and float(config["unet_strength"]) not in strengths:
        strengths.append(float(config["unet_strength"]))
    return strengths


def feature_specs(config: Mapping | None) -> list[FeatureSpec]:
    """All features of ``config`` (``config["features"]``, defaults filled in), in a stable order."""
    config = section_settings("features", config)
    specs = [FeatureSpec("z", "z"), FeatureSpec("c", "c")]
    for strength in config["strengths"]:
        for stage in config["stages"]:
            name = f"zc_s{format_number(strength)}_t{format_number(stage)}"
            specs.append(FeatureSpec(name, "zc", strength=strength, stage=stage))
    for block in config["unet_blocks"]:
        for stage in config["stages"]:
            name = f"unet_{block}_t{format_number(stage)}"
            specs.append(FeatureSpec(name, "unet", strength=config["unet_strength"], stage=stage, block=block))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):  # pragma: no cover - duplicates are refused above
        raise ValueError(f"feature names collide: {names}")
    return specs


def storage_dtype(spec: FeatureSpec, config: Mapping | None) -> str:
    """The dtype a feature is stored in: ``features.unet_dtype`` for U-Net blocks, float32 for z, c and zc
    (decoding targets and small)."""
    return section_settings("features", config)["unet_dtype"] if spec.kind == "unet" else "float32"


def feature_names(config: Mapping | None) -> list[str]:
    """File-safe names of all features of ``config`` (see the module docstring), stable order."""
    return [spec.name for spec in feature_specs(config)]


def zc_over_noise(specs: Sequence[FeatureSpec]) -> list[FeatureSpec]:
    """The zc features of the paper's comparison over noise levels: every strength at the final stage."""
    zc = [spec for spec in specs if spec.kind == "zc"]
    final = max((spec.stage for spec in zc), default=None)
    return [spec for spec in zc if spec.stage == final]


def zc_over_stages(specs: Sequence[FeatureSpec]) -> list[FeatureSpec]:
    """The zc features of the paper's comparison over denoising stages: every stage at the largest strength."""
    zc = [spec for spec in specs if spec.kind == "zc"]
    strongest = max((spec.strength for spec in zc), default=None)
    return [spec for spec in zc if spec.strength == strongest]


def banded_zc(specs: Sequence[FeatureSpec]) -> list[str]:
    """Names of the zc features with a joint z + zc model (those of either comparison), in spec order."""
    chosen = zc_over_noise(specs) + zc_over_stages(specs)
    return [spec.name for spec in specs if spec in chosen]


def unet_stages(specs: Sequence[FeatureSpec]) -> list[str]:
    """The denoising stages of the U-Net features, formatted as in their names (``0.2``, ``1``)."""
    return list(dict.fromkeys(format_number(spec.stage) for spec in specs if spec.kind == "unet"))
