"""Atomic outputs: nothing looking finished after a failure, and a full disk said in one line."""

from __future__ import annotations

import os
import subprocess

import h5py
import numpy as np
import pytest

from brainldm.files import DiskFullError, atomic_path, is_disk_full, stable_link

# What HDF5 raises when the disk fills during a write (h5py 3, HDF5 1.14), errno inside the text.
HDF5_ENOSPC = ("Can't decrement id ref count (file write failed: time = Tue Dec  1 10:00:00 2026, filename = "
               "'x.h5', file descriptor = 5, errno = 28, error message = 'No space left on device', buf = "
               "0x55d0, total write size = 8000000, bytes this sub-write = 8000000, bytes actually written = "
               "18446744073709551615, offset = 0)")


def test_failure_leaves_no_file(tmp_path):
    with pytest.raises(ValueError), atomic_path(tmp_path / "out.h5") as tmp:
        tmp.write_bytes(b"half")
        raise ValueError("killed")
    assert os.listdir(tmp_path) == []


def test_hdf5_disk_full_error_becomes_one_line(tmp_path):
    with pytest.raises(DiskFullError) as error, atomic_path(tmp_path / "betas.h5") as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError(HDF5_ENOSPC)
    message = str(error.value)
    assert message.startswith(f"{tmp_path}: disk full while writing betas.h5 (") and " free)" in message
    assert "\n" not in message and os.listdir(tmp_path) == []
    assert not is_disk_full(RuntimeError("Can't decrement id ref count (file write failed: errno = 5, ...)"))


@pytest.fixture
def tiny_filesystem(tmp_path):
    """A 256 kB tmpfs (needs root to mount; CI runs as root)."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)]).returncode != 0:
        pytest.skip("tmpfs cannot be mounted here")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_real_full_disk(tiny_filesystem):
    with pytest.raises(DiskFullError, match=rf"^{tiny_filesystem}/out: disk full while writing x.h5 \(.* free\)"):
        with atomic_path(tiny_filesystem / "out" / "x.h5") as tmp, h5py.File(tmp, "w") as h5:
            h5["betas"] = np.zeros(1_000_000)
    assert os.listdir(tiny_filesystem / "out") == []


def test_stable_link_points_at_the_target_and_says_what_it_was(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    link = tmp_path / "resources" / "nsd"
    assert stable_link(first, link) is None
    assert os.path.realpath(link) == str(first.resolve())
    assert stable_link(first, link) == str(first.resolve())  # unchanged: nothing rewritten
    assert stable_link(second, link) == str(first.resolve())
    assert os.path.realpath(link) == str(second.resolve())
    assert stable_link(link, link) == str(second.resolve())  # the link itself as the target: kept


def test_stable_link_refuses_to_replace_a_real_folder(tmp_path):
    (tmp_path / "nsd").mkdir()
    with pytest.raises(FileExistsError, match="found a real folder"):
        stable_link(tmp_path / "elsewhere", tmp_path / "nsd")
