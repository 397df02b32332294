"""The SLURM profile against a real single-node SLURM: every job through sbatch, GPU rules asking
for a GPU, and the same outputs as a local run.

The cluster is brought up by .ci/slurm/start.sh (munged, slurmctld, slurmd on this machine, a fake
GPU) and stopped by .ci/slurm/stop.sh, which need root and Debian's `slurmctld slurmd
slurm-client munge`; .ci/run installs them. Elsewhere (a login node without root) these tests
skip. The profile checks at the bottom need no cluster.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from brainldm.manifest import content_digest, file_digest
from conftest import REPO, SNAKEMAKE, run_snakemake

SLURM_DIR = REPO / ".ci" / "slurm"
PROFILE = REPO / "profiles" / "slurm"
LOCK = Path("/run/lock/brainldm-slurm-test.lock")
SLURM_COMMANDS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo")
RUN_TIMEOUT = 3600
# Outputs of both runs that are compared (logs and benchmarks hold times, hosts and job ids),
# and the outputs among them that summarise timings (compared without their numbers).
COMPARED = ("results", "resources")
TIMINGS = {"results/job_benchmarks.tsv"}


def _why_no_cluster() -> str | None:
    if os.geteuid() != 0:
        return ("a SLURM test cluster needs root to run its daemons; this optional test runs in CI, "
                "where .ci/run (as root) installs Debian's slurmctld slurmd slurm-client munge")
    missing = [command for command in SLURM_COMMANDS if shutil.which(command) is None]
    if missing:
        return (f"{', '.join(missing)} not installed: .ci/run installs Debian's slurmctld slurmd "
                "slurm-client munge (apt-get install them as root to run this test)")
    return None


needs_cluster = pytest.mark.skipif(_why_no_cluster() is not None, reason=str(_why_no_cluster()))


def gpu_rules() -> set[str]:
    """Rules whose conda env is envs/gpu.yaml, read from rules/*.smk."""
    rules = set()
    for path in (REPO / "rules").glob("*.smk"):
        for block in re.split(r"^(?=rule \w+:)", path.read_text(), flags=re.M):
            name = re.match(r"rule (\w+):", block)
            if name and re.search(r"^\s+conda:\s*\n\s+\"[./]*envs/gpu\.yaml\"", block, re.M):
                rules.add(name.group(1))
    return rules


# --- the cluster and one run of the DAG on it -------------------------------------------------


@pytest.fixture(scope="session")
def slurm_cluster():
    """The single-node SLURM of .ci/slurm/start.sh, up for the session, stopped at its end.

    One pytest session at a time owns it (a lock file), so concurrent test runs on one machine
    wait for each other instead of restarting each other's daemons.
    """
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with LOCK.open("w") as lock:
        deadline = time.monotonic() + RUN_TIMEOUT
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another test session held {LOCK} for {RUN_TIMEOUT} s")
                time.sleep(5)
        try:
            started = subprocess.run([SLURM_DIR / "start.sh"], capture_output=True, text=True, timeout=180)
            if started.returncode == 3:  # a slurm.conf that start.sh did not write: a real cluster
                pytest.skip(started.stderr.strip())
            if started.returncode != 0:
                pytest.fail(f".ci/slurm/start.sh failed:\n{started.stdout}\n{started.stderr}")
            yield started.stdout
        finally:
            subprocess.run([SLURM_DIR / "stop.sh"], capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def slurm_run(slurm_cluster, tmp_path_factory):
    """The whole DAG of tests/config/small.yaml with `--profile profiles/slurm`: (workdir, seconds)."""
    workdir = tmp_path_factory.mktemp("slurm_workflow")
    start = time.monotonic()
    try:
        # the node has this machine's CPUs; --max-threads keeps each job's --cpus-per-task within
        # them, as --cores does for the local run, and the GPU rules get the one thread each that the
        # local run on 2 cores shares out to its 2 subjects' jobs (same threads, so the same numbers)
        result = run_snakemake(workdir, "--profile", str(PROFILE), "--max-threads", str(os.cpu_count()),
                               "--set-threads", "reconstruct_images=1", "evaluate_subject=1", timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the SLURM run took more than {RUN_TIMEOUT} s:\n{_squeue()}")
    seconds = time.monotonic() - start
    if result.returncode != 0:
        pytest.fail(f"snakemake --profile profiles/slurm failed (rc {result.returncode}):\n"
                    f"{result.stdout[-4000:]}\n{result.stderr[-8000:]}")
    return workdir, seconds


def _squeue() -> str:
    return subprocess.run(["squeue", "--states=all"], capture_output=True, text=True).stdout


def _log(workdir: Path) -> str:
    """The log of the run that built ``workdir`` (later commands there, --report say, log too)."""
    logs = [p.read_text() for p in sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log"))]
    complete = [text for text in logs if "steps (100%) done" in text]
    assert complete, f"no snakemake log of a complete run in {workdir}"
    return complete[0]


def _jobs_of_log(log: str) -> tuple[dict[int, str], set[int], dict[int, int]]:
    """Snakemake jobs of a run: {jobid: rule}, the local jobids, {jobid: SLURM job id}."""
    jobs, local = {}, set()
    for kind, rule, jobid in re.findall(r"^(local)?rule (\w+):\n(?:    .*\n)*?    jobid: (\d+)$", log, re.M):
        jobs[int(jobid)] = rule
        if kind:
            local.add(int(jobid))
    submitted = {int(job): int(slurm) for job, slurm in re.findall(r"^Job (\d+) has been submitted with SLURM jobid (\d+)", log, re.M)}
    return jobs, local, submitted


def _slurm_job(slurm_id: int) -> dict[str, str]:
    """slurmctld's record of a job: no accounting needed, start.sh's MinJobAge keeps it a day."""
    out = subprocess.run(["scontrol", "--oneliner", "show", "job", str(slurm_id)],
                         capture_output=True, text=True, check=True).stdout
    return dict(re.findall(r"(\S+?)=(\S*)", out))


def _wall_seconds(log: str) -> float:
    """First to last timestamp of a snakemake log."""
    stamps = [datetime.strptime(s, "%a %b %d %H:%M:%S %Y") for s in re.findall(r"^\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]$", log, re.M)]
    return (max(stamps) - min(stamps)).total_seconds()


# --- the tests --------------------------------------------------------------------------------


@needs_cluster
@pytest.mark.workflow
def test_every_job_went_through_sbatch(slurm_run):
    workdir, _ = slurm_run
    jobs, local, submitted = _jobs_of_log(_log(workdir))
    assert jobs, "no jobs in the snakemake log"
    assert {jobs[job] for job in local} <= {"all"}, f"jobs run on the login node: {sorted(jobs[job] for job in local)}"
    remote = set(jobs) - local
    assert set(submitted) == remote, f"jobs without sbatch: {sorted(jobs[j] for j in remote - set(submitted))}"
    assert len(set(submitted.values())) == len(submitted)

    records = {slurm_id: _slurm_job(slurm_id) for slurm_id in submitted.values()}
    # SLURM's side: the run's jobs share one job name; there are no others under it
    names = {record["JobName"] for record in records.values()}
    assert len(names) == 1, names
    listed = subprocess.run(["squeue", "--states=all", "--noheader", "--format=%i", f"--name={names.pop()}"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert sorted(map(int, listed)) == sorted(submitted.values())
    for job, slurm_id in submitted.items():
        record = records[slurm_id]
        assert record["JobState"] == "COMPLETED" and record["ExitCode"] == "0:0", (jobs[job], record)
        assert re.fullmatch(rf"rule_{jobs[job]}(_wildcards_.*)?", record["Comment"]), (jobs[job], record["Comment"])


@needs_cluster
@pytest.mark.workflow
def test_gpu_rules_asked_for_a_gpu(slurm_run):
    workdir, _ = slurm_run
    jobs, _, submitted = _jobs_of_log(_log(workdir))
    wanted = gpu_rules()
    assert wanted <= set(jobs.values()), f"GPU rules missing from the run: {wanted - set(jobs.values())}"
    for job, slurm_id in submitted.items():
        record = _slurm_job(slurm_id)
        gpus = re.findall(r"gres[:/]gpu[:=](\d+)", record.get("TresPerJob", "") + "," + record.get("TRES", ""))
        if jobs[job] in wanted:
            assert gpus and int(gpus[0]) == 1, (jobs[job], record.get("TresPerJob"), record.get("TRES"))
        else:
            assert not gpus, (jobs[job], record.get("TresPerJob"))


def _tsv_keys(path: Path) -> list[str]:
    """The rows of a table of timings without the timings: its first three columns."""
    return sorted("\t".join(line.split("\t")[:3]) for line in path.read_text().splitlines())


def compare_outputs(local: Path, cluster: Path) -> dict[str, list[str]]:
    """Outputs of two runs: byte-identical, HDF5 with equal contents (datasets and attributes;
    group headers may record creation times), timings (same rows), or differing."""
    def files(root):
        return {p.relative_to(root).as_posix() for part in COMPARED for p in (root / part).rglob("*") if p.is_file()}

    left, right = files(local), files(cluster)
    kinds = {"bytes": [], "hdf5 contents": [], "timings": [], "differ": [],
             "only local": sorted(left - right), "only slurm": sorted(right - left)}
    for name in sorted(left & right):
        a, b = local / name, cluster / name
        if name in TIMINGS:
            kinds["timings" if _tsv_keys(a) == _tsv_keys(b) else "differ"].append(name)
        elif file_digest(a) == file_digest(b):
            kinds["bytes"].append(name)
        elif content_digest(a) == content_digest(b) != file_digest(a):
            kinds["hdf5 contents"].append(name)
        else:
            kinds["differ"].append(name)
    return kinds


@needs_cluster
@pytest.mark.workflow
def test_outputs_equal_a_local_run(slurm_run, workflow_run):
    """Outputs equal the local run's. Measured: every one is byte-identical (HDF5, NIfTI, PNG,
    models, tables: same seeds and thread counts, no file records a path); HDF5 files may also
    match by contents only, and the timings summary differs in its numbers."""
    workdir, _ = slurm_run
    kinds = compare_outputs(workflow_run, workdir)
    print({kind: len(names) for kind, names in kinds.items()})
    print("HDF5 equal in contents, not bytes:", kinds["hdf5 contents"])
    assert not kinds["only local"] and not kinds["only slurm"], kinds
    assert not kinds["differ"], f"outputs that differ between the local and the SLURM run: {kinds['differ']}"
    assert len(kinds["bytes"]) > 100 and kinds["timings"] == sorted(TIMINGS)


def _idle_seconds(records: list[dict[str, str]]) -> float:
    """Seconds between the first job's start and the last one's end in which no job ran: what
    submission, status polls and the scheduler cost (the node runs jobs back to back otherwise)."""
    spans = sorted((datetime.fromisoformat(r["StartTime"]), datetime.fromisoformat(r["EndTime"])) for r in records)
    idle, reached = 0.0, spans[0][0]
    for start, end in spans:
        idle += max(0.0, (start - reached).total_seconds())
        reached = max(reached, end)
    return idle


@needs_cluster
@pytest.mark.workflow
def test_slurm_overhead_is_reasonable(slurm_run, workflow_run):
    workdir, seconds = slurm_run
    _, _, submitted = _jobs_of_log(_log(workdir))
    idle = _idle_seconds([_slurm_job(slurm_id) for slurm_id in submitted.values()])
    local = _wall_seconds(_log(workflow_run))
    print(f"SLURM run: {seconds:.0f} s wall, {len(submitted)} sbatch jobs, node idle {idle:.0f} s between them; "
          f"local run: {local:.0f} s")
    # Waiting for a job costs at most one status poll (10 s after a finished job) and a scheduler
    # cycle; wall times depend on the machine's load, so they are printed, not compared.
    assert idle <= 15 * len(submitted), (idle, len(submitted))


# --- the profile itself (no cluster needed) ---------------------------------------------------


def _profile() -> dict:
    return yaml.safe_load((PROFILE / "config.yaml").read_text())


def test_profile_uses_the_slurm_executor_without_sacct():
    profile = _profile()
    assert profile["executor"] == "slurm"
    assert profile["slurm-status-command"] == "squeue"
    assert 0 < profile["slurm-init-seconds-before-status-checks"] <= 30


def test_profile_asks_a_gpu_for_exactly_the_gpu_rules():
    requests = {rule for rule, resources in _profile().get("set-resources", {}).items()
                if resources.get("gpu") or "gpu" in str(resources.get("gres", ""))}
    assert gpu_rules() >= {"build_model", "extract_features", "reconstruct_images"}
    assert requests == gpu_rules()


def test_profile_leaves_account_and_partition_to_the_site():
    profile = _profile()
    resources = [profile.get("default-resources", {}), *profile.get("set-resources", {}).values()]
    assert not any("slurm_account" in r or "slurm_partition" in r for r in resources)
    text = (PROFILE / "config.yaml").read_text()
    assert "# slurm_account:" in text and "# slurm_partition:" in text


def test_profile_option_names_exist():
    """Every key of the profile is an option of the installed snakemake and SLURM plugin."""
    help_text = subprocess.run([*SNAKEMAKE, "--help"], capture_output=True, text=True).stdout
    for key in _profile():
        assert f"--{key}" in help_text, f"profiles/slurm: --{key} is not an option of the installed snakemake"


@needs_cluster
@pytest.mark.workflow
def test_feature_jobs_run_at_once_and_gather_the_one_job_files(slurm_cluster, workflow_run, tmp_path):
    """features.jobs: 2 makes two GPU jobs that run at the same time; the gathered files equal one job's."""
    names = sorted(p.name for p in (workflow_run / "results" / "features").glob("*.h5"))
    targets = [f"results/features/{name}" for name in names]
    # the reference: one job, locally, with the thread count of the parts (float sums depend on it)
    reference, work = tmp_path / "one_job", tmp_path / "run"
    for folder in (reference, work):
        shutil.copytree(workflow_run, folder, symlinks=True)  # upstream outputs stay complete (times kept)
        shutil.rmtree(folder / "results" / "features")
    one_job = run_snakemake(reference, "--cores", "2", "--set-threads", "extract_features=1", "--", *targets)
    assert one_job.returncode == 0, one_job.stderr[-4000:]
    expected = {name: content_digest(reference / "results" / "features" / name) for name in names}
    # two single-CPU jobs fit the test node's 2 CPUs at once (the rule asks for 4 threads and 16 GB); a
    # --set-resources on the command line replaces the profile's for the rule, so its gpu is given again
    result = run_snakemake(work, "--profile", str(PROFILE), "--max-threads", str(os.cpu_count()),
                           "--set-threads", "extract_features=1",
                           "--set-resources", "extract_features:mem_mb=3000", "extract_features:gpu=1",
                           "--config", 'features={"jobs": 2}', "--", *targets, timeout=RUN_TIMEOUT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    logs = sorted((work / ".snakemake" / "log").glob("*.snakemake.log"))
    jobs, _, submitted = _jobs_of_log(logs[-1].read_text())
    parts = [_slurm_job(slurm_id) for job, slurm_id in submitted.items() if jobs[job] == "extract_features"]
    assert len(parts) == 2, sorted(jobs.values())
    for record in parts:
        assert record["JobState"] == "COMPLETED", record
        assert re.search(r"gres[:/]gpu[:=]1", record.get("TresPerJob", "") + "," + record.get("TRES", "")), record
    starts = [datetime.fromisoformat(r["StartTime"]) for r in parts]
    ends = [datetime.fromisoformat(r["EndTime"]) for r in parts]
    assert max(starts) < min(ends), f"the feature jobs did not run at the same time: {starts} {ends}"
    for part in (0, 1):
        log = (work / "logs" / "features" / "extract_features" / f"part{part}_of_2.log").read_text()
        assert f"part {part + 1} of 2" in log and "complete, skipped" not in log
    assert {p.name: content_digest(p) for p in sorted((work / "results" / "features").glob("*.h5"))} == expected
    assert not list((work / "results" / "features" / "shards").glob("shard_*.h5"))  # removed after the gather
