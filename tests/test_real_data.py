"""The README's "Using real data" section, followed literally on a tree laid out like NSD's download.

The tree (``nsd_download`` in conftest) has NSD's 40 design sessions, HDF5 betas and no COCO
captions inside; the model is a folder laid out as the hub ships SD 1.4 (PNDM scheduler config).
Only the keys the README names change: the paper's configuration file, ``nsd_root`` and ``model``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pandas as pd
import pytest

import brainldm.nsd.layout as layout
from conftest import REPO
from hub_checkpoints import build_checkpoint

PLACEHOLDERS = {"/data/nsd": "nsd_root", "/models/stable-diffusion-v1-4": "model"}


def _readme_real_data_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Using real data"):text.index("## Cluster (SLURM)")]
    (block,) = re.findall(r"```bash\n(.*?)```", section, re.S)
    return [line for line in block.splitlines() if line.strip()]


def _checkout(workdir):
    """A working copy of the repository (links to its files), so that outputs stay out of the repository."""
    workdir.mkdir(exist_ok=True)
    for entry in ("Snakefile", "rules", "workflow_scripts", "report", "envs", "profiles", "config.yaml",
                  "config.paper.yaml"):
        if not (workdir / entry).exists():
            (workdir / entry).symlink_to(REPO / entry)
    return workdir


def _run(command: str, workdir, paths) -> subprocess.CompletedProcess:
    """A README line as typed in the repository root, with the user's paths in place of the examples."""
    for example, key in PLACEHOLDERS.items():
        command = command.replace(example, str(paths[key]))
    argv = shlex.split(command)
    assert argv[0] == ".venv/bin/snakemake"
    argv = [sys.executable, "-m", "snakemake", *argv[1:]]  # this venv's snakemake
    result = subprocess.run(argv, cwd=_checkout(workdir), capture_output=True, text=True, timeout=600,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    result.output = result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def real_layout(nsd_download, tmp_path_factory):
    folder = tmp_path_factory.mktemp("real_layout")
    root = folder / "nsd"
    shutil.copytree(nsd_download["root"], root)
    captions = [annotation["caption"] for split in layout.CAPTION_SPLITS
                for annotation in json.loads((nsd_download["coco"] / f"captions_{split}.json").read_text())["annotations"]]
    model = build_checkpoint("sd14", folder / "stable-diffusion-v1-4", captions)
    return {"nsd_root": root, "model": model, "coco": nsd_download["coco"], "workdir": folder / "work"}


def test_readme_gives_the_three_steps():
    dry_run, split, run = _readme_real_data_commands()
    for line in (dry_run, split, run):
        assert "--configfile config.paper.yaml --config nsd_root=/data/nsd model=/models/stable-diffusion-v1-4" in line
    assert " -n " in dry_run and "results/split/split_summary.tsv" in split and "--profile profiles/slurm" in run


def test_without_captions_the_error_names_the_path_and_the_download(real_layout):
    dry_run = _readme_real_data_commands()[0]
    result = _run(dry_run, real_layout["workdir"], real_layout)
    assert result.returncode != 0
    expected = layout.captions(real_layout["nsd_root"], "train2017")
    assert f"{expected} not found" in result.output
    assert "annotations_trainval2017.zip" in result.output and "ingestion.captions_dir" in result.output


def test_readme_steps_run_the_papers_settings(real_layout):
    # Step 2 of the README: the captions where nsd_access puts them.
    target = layout.captions_dir(real_layout["nsd_root"])
    shutil.copytree(real_layout["coco"], target)
    dry_run, split, _ = _readme_real_data_commands()
    result = _run(dry_run, real_layout["workdir"], real_layout)
    assert result.returncode == 0, result.output[-3000:]
    for rule in ("split_trials", "extract_roi_betas", "extract_features", "reconstruct_images", "encode_feature"):
        assert rule in result.stdout
    result = _run(split, real_layout["workdir"], real_layout)
    assert result.returncode == 0, result.output[-3000:]
    summary = pd.read_csv(real_layout["workdir"] / "results" / "split" / "split_summary.tsv", sep="\t")
    assert list(summary["subject"]) == ["subj01", "subj02", "subj05", "subj07"]  # the paper's subjects
    assert (summary["sessions"] == "1-37").all() and (summary["n_sessions"] == 37).all()
    assert (summary["train_trials"] + summary["test_trials"] == 37 * 2).all()
    log = (real_layout["workdir"] / "logs" / "ingestion" / "split_trials.log").read_text()
    assert "train/test split" in log and "1-37" in log
