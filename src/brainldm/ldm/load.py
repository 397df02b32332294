"""Loading the Stable Diffusion pipeline onto a device, in that device's dtype, with the paper's sampler.

SD 1.4, 1.5 and 2.1-base ship ``PNDMScheduler`` (their ``scheduler/scheduler_config.json``),
SD 2.1 ships DDIM with ``v_prediction``. The paper samples with DDIM, so by default the
scheduler is rebuilt as :class:`diffusers.DDIMScheduler` from the checkpoint's own
scheduler config (its betas, ``prediction_type``, ``steps_offset``, ...);
``model_loading.scheduler: shipped`` keeps what the checkpoint ships.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import torch
from diffusers import DDIMScheduler, DiffusionPipeline, StableDiffusionImg2ImgPipeline
from diffusers.utils import is_accelerate_available

from ..device import torch_device
from .model_folder import ModelFolderError, check_model_folder, looks_like_local_path, weight_files

__all__ = ["load_pipeline", "load_model", "use_scheduler", "scheduler_provenance", "model_fingerprint",
           "img2img_timesteps", "SCHEDULERS"]

log = logging.getLogger(__name__)

#: ``model_loading.scheduler`` values: the paper's DDIM built from the shipped config, or the shipped one.
SCHEDULERS = ("ddim", "shipped")


def load_pipeline(
    model: str | os.PathLike,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    variant: str | None = None,
) -> StableDiffusionImg2ImgPipeline:
    """Load an SD img2img pipeline from a local diffusers folder or a hub id, as shipped.

    Parameters
    ----------
    model : str or os.PathLike
        Local diffusers folder or hub id (resolved from the local cache when
        ``HF_HUB_OFFLINE=1``).
    device : str or torch.device, default "cpu"
        Where to move the pipeline.
    dtype : torch.dtype, default torch.float32
        Weight dtype.
    variant : str, optional
        Weight variant, e.g. ``"fp16"`` for a download of only ``*.fp16.safetensors``.

    Returns
    -------
    diffusers.StableDiffusionImg2ImgPipeline
        Without safety checker and feature extractor (whatever ``model_index.json`` names).

    Raises
    ------
    ModelFolderError
        A local folder, its ``model_index.json``, a component folder or a component's
        weights are missing; the message names it and lists the weight files found.
    """
    local = Path(model)
    if local.exists() or looks_like_local_path(model):
        check_model_folder(local, variant)
        model = str(local)
    try:
        pipe = StableDiffusionImg2ImgPipeline.from_pretrained(
            model,
            # diffusers 0.42 deprecates ``torch_dtype`` (FutureWarning) for ``dtype``.
            dtype=dtype,
            variant=variant,
            # Without accelerate diffusers falls back anyway, but logs a warning per load.
            low_cpu_mem_usage=is_accelerate_available(),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    except OSError as exc:
        if local.is_dir():  # diffusers' own message names one file; say what is there
            raise ModelFolderError(f"{local}: {exc} (variant {variant!r}; weight files found: "
                                   f"{weight_files(local) or 'none'})") from exc
        raise
    return pipe.to(device)


def use_scheduler(pipe, scheduler: str = "ddim"):
    """Give ``pipe`` the paper's sampler: DDIM from its own scheduler config (``"ddim"``), or keep it (``"shipped"``).

    The shipped class is kept in ``pipe.shipped_scheduler`` for the provenance.
    """
    if scheduler not in SCHEDULERS:
        raise ValueError(f"model_loading.scheduler must be one of {SCHEDULERS}, found {scheduler!r}")
    shipped = getattr(pipe, "shipped_scheduler", None) or type(pipe.scheduler).__name__
    if scheduler == "ddim" and not isinstance(pipe.scheduler, DDIMScheduler):
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        log.info("scheduler: %s shipped, DDIM built from its config (prediction_type %s)",
                 shipped, pipe.scheduler.config.prediction_type)
    pipe.shipped_scheduler = shipped
    return pipe


def scheduler_provenance(pipe) -> dict[str, str]:
    """Attributes that say which sampler made a file: class, full config (JSON) and the shipped class."""
    config = {k: v for k, v in dict(pipe.scheduler.config).items() if not k.startswith("_")}
    return {
        "scheduler": type(pipe.scheduler).__name__,
        "scheduler_config": json.dumps(config, sort_keys=True, default=str),
        "shipped_scheduler": getattr(pipe, "shipped_scheduler", type(pipe.scheduler).__name__),
    }


def img2img_timesteps(scheduler, num_inference_steps: int, strength: float) -> list[int]:
    """The timesteps (one U-Net call each) of an img2img run, as diffusers' pipeline computes them.

    ``int(n * strength)`` steps of the ``n``-step schedule (50 x 0.8 = 40 for DDIM);
    PNDM's schedule has one more entry (51 for 50 steps), so it makes 41 calls.
    A copy of the scheduler is used: ``set_timesteps`` changes its state.
    """
    probe = type(scheduler).from_config(scheduler.config)
    probe.set_timesteps(num_inference_steps, device="cpu")
    init_timestep = min(int(num_inference_steps * strength), num_inference_steps)
    t_start = max(num_inference_steps - init_timestep, 0)
    return [int(t) for t in probe.timesteps[t_start * probe.order:]]


def model_fingerprint(pipe) -> str:
    """A cheap content hash of the pipeline (strided samples of every weight, tokenizer, scheduler).

    Re-initialised or retrained weights change it; it is used to refuse shards
    of another model when resuming.
    """
    digest = hashlib.sha256()
    for component in ("vae", "text_encoder", "unet"):
        module = getattr(pipe, component)
        for name, tensor in module.state_dict().items():
            flat = tensor.detach().reshape(-1)
            stride = max(1, flat.numel() // 64)
            digest.update(f"{component}.{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
            digest.update(flat[::stride][:64].float().cpu().numpy().tobytes())
    vocab = pipe.tokenizer.get_vocab()
    digest.update(json.dumps(sorted(vocab.items()), ensure_ascii=True).encode())
    digest.update(json.dumps(dict(pipe.scheduler.config), sort_keys=True, default=str).encode())
    return digest.hexdigest()


def load_model(model: str | os.PathLike | DiffusionPipeline, device: str | torch.device = "auto",
               scheduler: str = "ddim", variant: str | None = None):
    """Load the img2img pipeline (or move a loaded one) onto ``device`` in its dtype, with the sampler asked for.

    Parameters
    ----------
    model : str, os.PathLike or diffusers pipeline
        A diffusers folder or hub id, loaded with :func:`load_pipeline`, or an
        already built pipeline (moved in place).
    device : str or torch.device, default "auto"
        See :func:`brainldm.device.torch_device`.
    scheduler : {"ddim", "shipped"}, default "ddim"
        See :func:`use_scheduler`.
    variant : str, optional
        Weight variant of a folder (``"fp16"``).

    Returns
    -------
    diffusers.StableDiffusionImg2ImgPipeline
    """
    resolved, dtype = torch_device(device, "features.device or reconstruction.device")
    if isinstance(model, DiffusionPipeline):
        # to(device, dtype) on a pipeline already in that dtype only logs diffusers' "kept in float32" notice.
        pipe = model.to(resolved, dtype) if model.unet.dtype != dtype else model.to(resolved)
    else:
        pipe = load_pipeline(model, device=resolved, dtype=dtype, variant=variant)
    pipe.set_progress_bar_config(disable=True)
    return use_scheduler(pipe, scheduler)
