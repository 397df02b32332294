"""One device module: torch device and dtype, himalaya backend; torch not imported where no GPU driver is."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from brainldm import device as device_module
from brainldm.device import NUMPY_BACKEND, array_backend, cuda_available, gpu_driver_present, himalaya_backend, torch_device


def test_driver_files_and_visible_devices(tmp_path, monkeypatch):
    driver = tmp_path / "nvidiactl"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert not gpu_driver_present((driver,))
    driver.touch()
    assert gpu_driver_present((driver,))
    for hidden in ("", "-1"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        assert not gpu_driver_present((driver,))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert gpu_driver_present((driver,))


def test_cuda_available_is_torchs_answer():
    torch = pytest.importorskip("torch")
    assert cuda_available() == torch.cuda.is_available()


def _in_a_new_interpreter(*statements: str) -> None:
    subprocess.run([sys.executable, "-c", "import sys; " + "; ".join(statements)], check=True)


def test_no_driver_means_no_torch_import():
    _in_a_new_interpreter("import brainldm.device as d", "d.DRIVER_FILES = ()",
                          "assert d.himalaya_backend('auto') == 'numpy'", "assert not d.cuda_available()",
                          "assert 'torch' not in sys.modules, 'torch imported'")


def test_numpy_backend_is_himalayas_functions_without_its_import():
    _in_a_new_interpreter("import numpy as np", "from brainldm.ridge import RidgeCVEngine",
                          "x = np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32)",
                          "RidgeCVEngine(x, x[:8], [1.0, 10.0], cv=4, backend='numpy').fit(x[:, :3])",
                          "assert not {'himalaya', 'sklearn'} & set(sys.modules), 'himalaya or scikit-learn imported'")
    numpy_backend = pytest.importorskip("himalaya.backend").set_backend("numpy")
    assert array_backend("numpy") is NUMPY_BACKEND
    assert NUMPY_BACKEND.matmul is numpy_backend.matmul
    a = np.arange(4.0)
    assert NUMPY_BACKEND.to_numpy(a) is numpy_backend.to_numpy(a) is a
    assert NUMPY_BACKEND.asarray(a, dtype=np.float32).dtype == numpy_backend.asarray(a, dtype=np.float32).dtype


def test_auto_backend_follows_cuda(monkeypatch):
    assert himalaya_backend("torch") == "torch"
    monkeypatch.setattr(device_module, "cuda_available", lambda: True)
    assert himalaya_backend("auto") == "torch_cuda"
    monkeypatch.setattr(device_module, "cuda_available", lambda: False)
    assert himalaya_backend("auto") == "numpy"


def test_torch_device():
    torch = pytest.importorskip("torch")
    assert torch_device("cpu") == (torch.device("cpu"), torch.float32)
    device, dtype = torch_device("auto")
    assert (device.type, dtype) == (("cuda", torch.float16) if torch.cuda.is_available() else ("cpu", torch.float32))
    if torch.cuda.is_available():
        assert torch_device("auto", half_on_cuda=False)[1] == torch.float32
    else:
        with pytest.raises(RuntimeError, match="evaluation.device is 'cuda:1' but CUDA is not available"):
            torch_device("cuda:1", "evaluation.device")
    with pytest.raises(ValueError, match="features.device 'gpu please' is not 'auto'"):
        torch_device("gpu please", "features.device")
