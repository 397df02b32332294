"""Where a job computes: the torch device and dtype of the diffusion and evaluation networks, and the
himalaya backend of the ridge models, from one ``device`` / ``backend`` setting each.

``auto`` means CUDA when a GPU is usable, else the CPU. Whether one can be is first asked of the
kernel (an NVIDIA or AMD GPU driver, and ``CUDA_VISIBLE_DEVICES`` not empty): without a driver,
torch is not imported, because its import costs seconds and most jobs are short CPU jobs.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np

__all__ = ["gpu_driver_present", "cuda_available", "torch_device", "himalaya_backend", "array_backend"]

#: Files a GPU driver creates: NVIDIA's (CUDA) and AMD's kernel driver (ROCm builds of torch).
DRIVER_FILES = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/kfd")


def gpu_driver_present(driver_files=None) -> bool:
    """Whether a GPU could be usable: a GPU driver is loaded and ``CUDA_VISIBLE_DEVICES`` hides none of it.

    False means no CUDA device exists for this process; True only that torch should be asked.
    ``driver_files`` defaults to :data:`DRIVER_FILES`.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    return any(Path(f).exists() for f in (DRIVER_FILES if driver_files is None else driver_files))


def cuda_available() -> bool:
    """``torch.cuda.is_available()``, without importing torch where no GPU driver is loaded."""
    if not gpu_driver_present():
        return False
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def torch_device(device="auto", what: str = "device", half_on_cuda: bool = True):
    """The torch device and dtype for a ``device`` setting.

    Parameters
    ----------
    device : str or torch.device, default "auto"
        ``"auto"``: the current CUDA device when CUDA is available, else the CPU.
        ``"cpu"``, ``"cuda"``, ``"cuda:N"``, or any device torch reads.
    what : str
        The setting's name, for error messages (e.g. ``"features.device"``).
    half_on_cuda : bool
        float16 on CUDA (Stable Diffusion's usual inference precision); float32 otherwise.

    Returns
    -------
    (torch.device, torch.dtype)

    Raises
    ------
    ValueError
        A string torch does not read as a device.
    RuntimeError
        A CUDA device asked for where CUDA is not available (or its index is out of range).
    """
    import torch

    cuda_dtype = torch.float16 if half_on_cuda else torch.float32
    if isinstance(device, str) and device == "auto":
        if cuda_available():
            return torch.device("cuda", torch.cuda.current_device()), cuda_dtype
        return torch.device("cpu"), torch.float32
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"{what} {device!r} is not 'auto', 'cpu', 'cuda' or 'cuda:N': {exc}") from exc
    if resolved.type == "cuda":
        if not cuda_available():
            raise RuntimeError(f"{what} is {device!r} but CUDA is not available on this machine "
                               "(use 'auto' or 'cpu')")
        index = resolved.index if resolved.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise RuntimeError(f"{what} is {device!r} but only {torch.cuda.device_count()} CUDA device(s) exist")
        return torch.device("cuda", index), cuda_dtype
    return resolved, torch.float32


def himalaya_backend(backend: str = "auto") -> str:
    """himalaya backend name for ``backend`` (``auto``, ``numpy``, ``torch``, ``torch_cuda``, ...).

    ``auto`` is ``torch_cuda`` when CUDA is available, else ``numpy``.
    """
    if backend != "auto":
        return backend
    return "torch_cuda" if cuda_available() else "numpy"


#: The operations of himalaya's ``numpy`` backend that the ridge engine uses, the same functions
#: (``np.asarray``, ``np.matmul``, ``to_numpy`` the identity), without importing himalaya: its import,
#: with scikit-learn's, was about half of a small encoding job's wall time.
NUMPY_BACKEND = SimpleNamespace(
    name="numpy",
    asarray=lambda array, dtype=None: np.asarray(array, dtype=dtype),
    matmul=np.matmul,
    to_numpy=lambda array: array,
)


def array_backend(backend: str = "auto"):
    """The array backend of the ridge models for ``backend``: :data:`NUMPY_BACKEND`, or himalaya's.

    Other names (``torch``, ``torch_cuda``, ...) are set as himalaya's backend and returned from it.
    """
    name = himalaya_backend(backend)
    if name == "numpy":
        return NUMPY_BACKEND
    from himalaya.backend import set_backend

    return set_backend(name, on_error="raise")
