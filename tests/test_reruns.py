"""Runs as users make them: one subject rebuilt alone, a killed run resumed, the same config twice."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from brainldm.manifest import content_digest, file_digest, read_manifest

from conftest import REPO, SMALL_CONFIG, SNAKEMAKE, run_snakemake

pytestmark = pytest.mark.workflow


def _state(root: Path, folders) -> dict:
    """Path -> (mtime in ns, SHA-256) of every file under ``folders`` of ``root``."""
    state = {}
    for folder in folders:
        for path in sorted((root / folder).rglob("*")):
            if path.is_file():
                state[str(path.relative_to(root))] = (path.stat().st_mtime_ns, file_digest(path))
    return state


def _copy_run(workflow_run: Path, destination: Path) -> Path:
    """A copy of a finished run (mtimes kept, so Snakemake sees it as complete)."""
    shutil.copytree(workflow_run, destination, symlinks=True)
    return destination


def test_rebuilding_one_subject_leaves_the_others_untouched(workflow_run, tmp_path):
    work = _copy_run(workflow_run, tmp_path / "run")
    others = ["results/subj02", "results/features", "results/stimuli", "results/split", "resources"]
    before_others = _state(work, others)
    before_manifest = read_manifest(work / "results" / "subj01" / "outputs.tsv")
    decoded = work / "results" / "subj01" / "decoding" / "z.h5"
    decoded_mtime = decoded.stat().st_mtime_ns

    # the README's command to rebuild one subject from its decoders on
    result = run_snakemake(work, "--cores", "2", "results/subj01/outputs.tsv", "--forcerun", "decode_latent")
    assert result.returncode == 0, result.stderr[-4000:]
    log = result.stdout + result.stderr
    assert "subject=subj01" in log and "subject=subj02" not in log

    assert decoded.stat().st_mtime_ns > decoded_mtime  # subj01 was rebuilt ...
    assert _state(work, others) == before_others  # ... and nothing of subj02 or shared was touched
    # rebuilt outputs are identical to the first run's: the pipeline is deterministic
    assert read_manifest(work / "results" / "subj01" / "outputs.tsv") == before_manifest
    again = run_snakemake(work, "-n", "results/subj01/outputs.tsv")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def _feature_files(root: Path) -> dict:
    return {p.name: content_digest(p) for p in sorted((root / "results" / "features").glob("*.h5"))}


def _finished(shards: Path) -> list:
    """Shard files that are complete (being written, they have a hidden temporary name)."""
    return sorted(p.name for p in shards.glob("*.h5") if not p.name.startswith("."))


def test_a_killed_run_resumes_and_equals_an_uninterrupted_run(workflow_run, tmp_path):
    work = _copy_run(workflow_run, tmp_path / "run")
    expected = _feature_files(workflow_run)
    assert expected
    shutil.rmtree(work / "results" / "features")
    targets = [f"results/features/{name}" for name in expected]
    command = [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(work),
               "--configfile", str(SMALL_CONFIG), "--cores", "2", *targets]
    shards = work / "results" / "features" / "shards"
    with open(tmp_path / "killed.log", "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                   env=dict(os.environ, HF_HUB_OFFLINE="1"))
        try:
            deadline = time.monotonic() + 900
            while not (shards.is_dir() and _finished(shards)):
                assert process.poll() is None, (tmp_path / "killed.log").read_text()[-4000:]
                assert time.monotonic() < deadline, "no feature shard was written in 15 minutes"
                time.sleep(0.5)
        finally:
            os.killpg(process.pid, signal.SIGKILL)  # the whole job, as a node failure would
            process.wait()
    # no output that looks finished after the kill
    assert not any((work / "results" / "features").glob("*.h5"))
    done_before = _finished(shards)

    # the README's recovery: a killed Snakemake leaves its lock behind; unlock, then rerun
    unlocked = run_snakemake(work, "--unlock", *targets)
    assert unlocked.returncode == 0, unlocked.stderr[-4000:]
    result = run_snakemake(work, "--cores", "2", *targets)
    assert result.returncode == 0, result.stderr[-4000:]
    log = (work / "logs" / "features" / "extract_features.log").read_text()
    assert "complete, skipped" in log  # the finished shards were not recomputed
    assert done_before
    assert _feature_files(work) == expected


def test_runtime_knobs_rerun_nothing(workflow_run):
    """Batch sizes, shard sizes, devices and backends change how jobs run, not what they compute."""
    changes = ['features={"batch_size": 3, "shard_size": 5, "device": "cpu"}',
               'reconstruction={"batch_size": 1, "shard_size": 3, "device": "cpu"}',
               'decoding={"backend": "numpy", "n_targets_batch": 7}',
               'encoding={"backend": "numpy", "n_targets_batch": 11, "n_alphas_batch": 2}',
               'evaluation={"batch_size": 5, "device": "cpu"}']
    result = run_snakemake(workflow_run, "-n", "--config", *changes)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Nothing to be done" in result.stdout + result.stderr, result.stdout[-3000:]
    changed = run_snakemake(workflow_run, "-n", "--config", 'features={"num_inference_steps": 9}')
    assert "extract_features" in changed.stdout  # a setting of the science still reruns
