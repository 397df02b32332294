"""Loading the Stable Diffusion pipeline onto a device, in that device's dtype."""

from __future__ import annotations

import os

import torch
from diffusers import DiffusionPipeline

from ..synthetic.tiny_sd import load_pipeline

__all__ = ["resolve_device", "load_model"]


def resolve_device(device: str | torch.device = "auto") -> tuple[torch.device, torch.dtype]:
    """The torch device and weight dtype for a ``features.device`` value.

    Parameters
    ----------
    device : str or torch.device, default "auto"
        ``"auto"``: the first CUDA device with float16 when CUDA is available,
        else the CPU with float32. ``"cpu"``: float32. ``"cuda"``,
        ``"cuda:N"``: float16 (SD 1.x's usual inference precision).

    Returns
    -------
    (torch.device, torch.dtype)

    Raises
    ------
    ValueError
        A string torch does not read as a device.
    RuntimeError
        A CUDA device asked for where CUDA is not available (or the index is out of range).
    """
    if isinstance(device, str) and device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device()), torch.float16
        return torch.device("cpu"), torch.float32
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"features.device {device!r} is not 'auto', 'cpu', 'cuda' or 'cuda:N': {exc}") from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"features.device is {device!r} but CUDA is not available on this machine "
                               "(use 'auto' or 'cpu')")
        index = resolved.index if resolved.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise RuntimeError(f"features.device is {device!r} but only {torch.cuda.device_count()} CUDA device(s) exist")
        return torch.device("cuda", index), torch.float16
    return resolved, torch.float32


def load_model(model: str | os.PathLike | DiffusionPipeline, device: str | torch.device = "auto"):
    """Load the img2img pipeline (or move a loaded one) onto ``device`` in its dtype, progress bar off.

    Parameters
    ----------
    model : str, os.PathLike or diffusers pipeline
        A diffusers folder or hub id, loaded with
        :func:`brainldm.synthetic.tiny_sd.load_pipeline` (whose errors name a
        missing component), or an already built pipeline (moved in place).
    device : str or torch.device, default "auto"
        See :func:`resolve_device`.

    Returns
    -------
    diffusers.StableDiffusionImg2ImgPipeline
    """
    torch_device, dtype = resolve_device(device)
    if isinstance(model, DiffusionPipeline):
        # to(device, dtype) on a pipeline already in that dtype only logs diffusers' "kept in float32" notice.
        pipe = model.to(torch_device, dtype) if model.unet.dtype != dtype else model.to(torch_device)
    else:
        pipe = load_pipeline(model, device=torch_device, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe
