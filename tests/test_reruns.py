"""Runs as users make them: one subject rebuilt alone, a killed run resumed, the same config twice."""

from __future__ import annotations

import contextlib
import json
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
    log = (work / "logs" / "features" / "extract_features" / "part0_of_1.log").read_text()
    assert "complete, skipped" in log  # the finished shards were not recomputed
    assert done_before
    assert _feature_files(work) == expected


def test_runtime_knobs_rerun_nothing(workflow_run):
    """Batch sizes, shard sizes, devices and backends change how jobs run, not what they compute."""
    changes = ['features={"batch_size": 3, "shard_size": 5, "device": "cpu"}',
               'reconstruction={"batch_size": 1, "shard_size": 3, "device": "cpu", "keep_shards": true}',
               'decoding={"backend": "numpy", "n_targets_batch": 7}',
               'encoding={"backend": "numpy", "n_targets_batch": 11}',
               'evaluation={"batch_size": 5, "device": "cpu"}']
    result = run_snakemake(workflow_run, "-n", "--config", *changes)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Nothing to be done" in result.stdout + result.stderr, result.stdout[-3000:]
    changed = run_snakemake(workflow_run, "-n", "--config", 'features={"num_inference_steps": 9}')
    assert "extract_features" in changed.stdout  # a setting of the science still reruns


def _readme_line(prefix: str) -> str:
    """The README's command line that starts with ``prefix`` (comment removed)."""
    for line in (REPO / "README.md").read_text().splitlines():
        if line.startswith(prefix):
            return line.split("  #")[0].strip()
    raise AssertionError(f"README has no line starting with {prefix!r}")


def test_a_copy_of_the_nsd_tree_reruns_nothing(workflow_run, tmp_path):
    """Moving NSD (a copy with the same files and times) keeps every result; a changed file still reruns."""
    work = _copy_run(workflow_run, tmp_path / "run")
    first, second = tmp_path / "nsd_on_scratch", tmp_path / "nsd_on_project"
    shutil.copytree(work / "resources" / "synthetic_nsd", first)  # copytree keeps the times, like cp -a
    targets = ["resources/models/tiny", "results/stimuli/stimuli.h5", "results/subj01/betas/early.h5"]
    built = run_snakemake(work, "--cores", "2", *targets, "--config", f"nsd_root={first}")
    assert built.returncode == 0, built.stderr[-4000:]
    assert os.path.realpath(work / "resources" / "nsd") == str(first.resolve())
    shutil.copytree(first, second)
    moved = run_snakemake(work, "-n", *targets, "--config", f"nsd_root={second}")
    assert moved.returncode == 0, moved.stderr[-4000:]
    assert "Nothing to be done" in moved.stdout + moved.stderr, moved.stdout[-3000:]
    assert os.path.realpath(work / "resources" / "nsd") == str(second.resolve())
    assert "resources/nsd now points to" in moved.stderr
    # the control: a captions file or a session that really changed reruns what reads it
    captions = next((second / "nsddata_stimuli").rglob("captions_train2017.json"))
    coco = json.loads(captions.read_text())
    coco["annotations"][0]["caption"] += " again"
    captions.write_text(json.dumps(coco))
    session = next((second / "nsddata_betas").rglob("betas_session01.hdf5"))
    os.utime(session)
    changed = run_snakemake(work, "-n", *targets, "--config", f"nsd_root={second}")
    assert changed.returncode == 0, changed.stderr[-4000:]
    for rule in ("build_model", "extract_stimuli", "extract_roi_betas"):
        assert f"rule {rule}:" in changed.stdout, (rule, changed.stdout[-3000:])


def test_an_orphaned_job_is_found_and_stopped_before_unlocking(workflow_run, tmp_path):
    """Only Snakemake killed (OOM killer): its job runs on; the README's commands find and stop it."""
    work = _copy_run(workflow_run, tmp_path / "run")
    model = work / "resources" / "models" / "tiny"
    expected = file_digest(model / "unet" / "diffusion_pytorch_model.safetensors")
    shutil.rmtree(model)
    command = [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(work),
               "--configfile", str(SMALL_CONFIG), "--cores", "1", "resources/models/tiny"]
    find_jobs = _readme_line('pgrep -af "$PWD/.snakemake/scripts/"')

    def jobs() -> list[str]:
        found = subprocess.run(["bash", "-c", find_jobs], cwd=work, capture_output=True, text=True)
        return [line for line in found.stdout.splitlines() if line.strip()]

    with open(tmp_path / "orphan.log", "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                   env=dict(os.environ, HF_HUB_OFFLINE="1"))
        try:
            deadline = time.monotonic() + 300
            while not jobs():
                assert process.poll() is None, (tmp_path / "orphan.log").read_text()[-4000:]
                assert time.monotonic() < deadline, "the job did not start in 5 minutes"
                time.sleep(0.2)
            process.kill()  # Snakemake alone, not its process group
            process.wait()
            orphans = jobs()
            assert orphans and all("build_model" in line for line in orphans), orphans
            for line in orphans:  # the README's `kill <pid>`
                os.kill(int(line.split()[0]), signal.SIGTERM)
            deadline = time.monotonic() + 60
            while jobs():
                assert time.monotonic() < deadline, jobs()
                time.sleep(0.2)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    assert not (model / "model_index.json").exists()  # the stopped job left nothing that looks finished
    unlocked = run_snakemake(work, "--unlock", "resources/models/tiny")
    assert unlocked.returncode == 0, unlocked.stderr[-4000:]
    resumed = run_snakemake(work, "--cores", "1", "resources/models/tiny")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert file_digest(model / "unet" / "diffusion_pytorch_model.safetensors") == expected
