"""Shared fixtures: a small synthetic NSD tree and one run of the workflow."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from brainldm.config import validate_config
from brainldm.synthetic import build_synthetic_anatomy, build_synthetic_stimuli, build_synthetic_subject

REPO = Path(__file__).resolve().parents[1]
SMALL_CONFIG = REPO / "tests" / "config" / "small.yaml"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def assert_reader_names_the_fault(path, change, read, message: str) -> None:
    """Apply ``change`` to the HDF5 file ``path``; ``read(path)`` must raise an IntermediateFileError naming it."""
    import h5py

    from brainldm.errors import IntermediateFileError

    with h5py.File(path, "r+") as h5:
        change(h5)
    with pytest.raises(IntermediateFileError, match=message) as info:
        read(path)
    assert Path(path).name in str(info.value)


@pytest.fixture(scope="session")
def small_config() -> dict:
    """The small test configuration with the schema's defaults filled in."""
    config = yaml.safe_load(SMALL_CONFIG.read_text())
    return validate_config(config, built_by_workflow={"nsd_root": [config["nsd_root"]], "model": [config["model"]]})


@pytest.fixture(scope="session")
def anatomy(tmp_path_factory, small_config):
    """Label volume and transform of the synthetic space (built once: pycortex is slow)."""
    out = tmp_path_factory.mktemp("anatomy")
    synthetic = small_config["synthetic"]
    build_synthetic_anatomy(
        out / "anatomy_streams.nii.gz", out / "pycortex_transform", synthetic["pycortex_subject"],
        synthetic["pycortex_transform"], synthetic["voxel_downsample"], "brainldm_synthetic",
    )
    return out


def build_tree(out: Path, labels: Path, config: dict) -> dict:
    """Build the synthetic NSD tree of ``config`` under ``out``; return its paths."""
    root, truth = out / "nsd", out / "truth"
    build_synthetic_stimuli(root, truth / "scenes.h5", config["synthetic"])
    for subject in config["subjects"]:
        build_synthetic_subject(root, subject, labels, truth / "scenes.h5", truth / f"{subject}.h5", config["synthetic"])
    return {"root": root, "truth": truth, "labels": labels}


@pytest.fixture(scope="session")
def synthetic_tree(tmp_path_factory, anatomy, small_config):
    """A small synthetic NSD tree built by the library functions the rules call."""
    return build_tree(tmp_path_factory.mktemp("tree"), anatomy / "anatomy_streams.nii.gz", small_config)


def run_snakemake(workdir: Path, *args: str, configfile: Path = SMALL_CONFIG, timeout: int = 1200):
    """Run the workflow of this repository in ``workdir``; return the completed process."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    command = [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
               "--configfile", str(configfile), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="session")
def workflow_run(tmp_path_factory):
    """One run of the whole DAG on the small configuration, shared by the tests that need it."""
    workdir = tmp_path_factory.mktemp("workflow")
    result = run_snakemake(workdir, "--cores", "2", timeout=3600)
    if result.returncode != 0:
        pytest.fail(f"snakemake failed:\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}")
    return workdir


@pytest.fixture(scope="session")
def nsd_download(tmp_path_factory, anatomy, small_config):
    """A synthetic tree laid out as NSD is downloaded today: 40 design sessions, all released (NIfTI
    betas: NSD's HDF5 layout of one chunk per voxel costs 0.3 s per session to write); subj03 completed
    32 of them (as in NSD); no COCO captions inside (a separate download, left in ``coco`` beside)."""
    import brainldm.nsd.layout as layout

    # One repetition per image, so that shared images shown only after session 32 exist.
    synthetic = {**small_config["synthetic"], "n_shared_images": 40, "n_unique_images": 40, "repetitions": 1,
                 "trials_per_session": 2, "runs_per_session": 1, "sessions_withheld": 0,
                 "sessions_completed": {"subj03": 32}, "betas_formats": ["nii.gz"]}
    config = {**small_config, "subjects": ["subj01", "subj02", "subj03", "subj05", "subj07"], "synthetic": synthetic}
    out = tmp_path_factory.mktemp("nsd_download")
    tree = build_tree(out, anatomy / "anatomy_streams.nii.gz", config)
    coco = out / "coco" / "annotations"
    coco.mkdir(parents=True)
    for split in layout.CAPTION_SPLITS:
        shutil.move(layout.captions(tree["root"], split), coco / f"captions_{split}.json")
    os.rmdir(layout.captions_dir(tree["root"]))
    return {**tree, "coco": coco, "synthetic": synthetic}
