"""Benchmark: streamed ROI extraction against the naive way, at NSD's real volume shape.

A synthetic subject at subj01's volume shape (81 x 104 x 83, ellipsoid brain),
750 trials per session, HDF5 betas chunked per trial like NSD's. For each ROI
(an nsdgeneral-sized one and the whole brain) and number of sessions:

* streamed: :func:`brainldm.nsd.betas.extract_roi_betas` (the pipeline's code,
  writing its HDF5 output, z-scoring per session);
* naive: load each session's whole array, mask it and z-score it, keep every
  session in memory, average the test repetitions and save (the original code's way).

Every 10th trial shows one of 100 test images, so the test set is bounded as in NSD.

Each variant runs in its own process; wall time and peak RSS (``ru_maxrss`` of
the child) are recorded. Results: ``bench/results/ingestion_streaming.{json,md}``.

    .venv/bin/python bench/ingestion_streaming.py [--sessions 3 6] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from machine import describe  # noqa: E402

VOLUME = (81, 104, 83)  # subj01's func1pt8mm (X, Y, Z)
TRIALS = 750
TEST_IMAGES = 100


def make_subject(folder: Path, n_sessions: int) -> dict:
    """Write betas_sessionNN.hdf5 files and ROI index files; return the ROIs."""
    import h5py

    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in VOLUME], indexing="ij"))
    brain = ((grid**2).sum(0) < 0.9).ravel()
    brain_index = np.flatnonzero(brain)
    posterior = np.flatnonzero(brain & (grid[1].ravel() < -0.55))  # a back-of-the-head patch
    rois = {"nsdgeneral_like": posterior, "brain": brain_index}
    for session in range(1, n_sessions + 1):
        path = folder / f"betas_session{session:02d}.hdf5"
        if path.exists():
            continue
        with h5py.File(path, "w") as h5:
            data = h5.create_dataset("betas", shape=(TRIALS,) + VOLUME[::-1], dtype=np.int16,
                                     chunks=(1,) + VOLUME[::-1])
            volume = np.zeros(int(np.prod(VOLUME)), np.int16)
            for t in range(TRIALS):
                volume[brain_index] = rng.integers(-900, 900, size=len(brain_index), dtype=np.int16)
                data[t] = volume.reshape(VOLUME).T
    for name, index in rois.items():
        np.save(folder / f"{name}.npy", index)
    return {name: len(index) for name, index in rois.items()}


def benchmark_trials(n_sessions: int):
    """Every 10th trial shows one of TEST_IMAGES test images (a bounded test set, as in NSD)."""
    import pandas as pd

    sessions = np.repeat(np.arange(1, n_sessions + 1), TRIALS)
    trials = pd.DataFrame({
        "session": sessions, "trial_in_session": np.tile(np.arange(TRIALS), n_sessions),
        "nsd_id": np.arange(len(sessions)) + TEST_IMAGES, "split": "train",
    })
    test = trials.index % 10 == 0
    trials.loc[test, "split"] = "test"
    trials.loc[test, "nsd_id"] = np.arange(test.sum()) % TEST_IMAGES
    return trials


def run_streamed(folder: Path, roi: str, n_sessions: int) -> None:
    import pandas as pd

    from brainldm.nsd.betas import extract_roi_betas

    index = np.load(folder / f"{roi}.npy")
    sessions = np.repeat(np.arange(1, n_sessions + 1), TRIALS)
    trials = benchmark_trials(n_sessions)
    files = {s: str(folder / f"betas_session{s:02d}.hdf5") for s in range(1, n_sessions + 1)}
    with tempfile.TemporaryDirectory(dir=folder) as out:
        extract_roi_betas(trials, files, {roi: index}, VOLUME, np.eye(4), {roi: f"{out}/{roi}.h5"})


def run_naive(folder: Path, roi: str, n_sessions: int) -> None:
    """The original code's way: whole sessions in memory, masked, concatenated, then saved."""
    import h5py

    index = np.load(folder / f"{roi}.npy")
    trials = benchmark_trials(n_sessions)
    sessions = []
    for s in range(1, n_sessions + 1):
        with h5py.File(folder / f"betas_session{s:02d}.hdf5", "r") as h5:
            whole = h5["betas"][()]  # (trials, Z, Y, X)
        x = whole.transpose(0, 3, 2, 1).reshape(TRIALS, -1)[:, index].astype(np.float32) / 300
        del whole
        sd = x.std(0)
        sessions.append(np.divide(x - x.mean(0), sd, out=np.zeros_like(x), where=sd > 0))
    betas = np.concatenate(sessions)
    is_test = (trials["split"] == "test").to_numpy()
    test_ids = trials.loc[is_test, "nsd_id"].to_numpy()
    test_rows = betas[is_test]
    test = np.stack([test_rows[test_ids == i].mean(0) for i in np.unique(test_ids)])
    with tempfile.TemporaryDirectory(dir=folder) as out, h5py.File(f"{out}/{roi}.h5", "w") as h5:
        h5["train/betas"] = betas[~is_test]
        h5["test/betas"] = test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[3, 6])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", default=None, help="folder for the generated betas (several GB)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        variant, roi, n, folder = args.child
        (run_streamed if variant == "streamed" else run_naive)(Path(folder), roi, int(n))
        return

    folder = Path(args.workdir or tempfile.mkdtemp(prefix="bench_ingestion_"))
    folder.mkdir(parents=True, exist_ok=True)
    sizes = make_subject(folder, max(args.sessions))
    rows = []
    for n_sessions in args.sessions:
        for roi in sizes:
            runs = {"streamed": [], "naive": []}
            for _ in range(args.repeats):
                for variant in runs:
                    # ru_maxrss of children is a running maximum: measure each child alone
                    out = subprocess.run(
                        [sys.executable, "-c",
                         "import resource,subprocess,sys,time;t=time.perf_counter();"
                         f"subprocess.run([sys.executable,{__file__!r},'--child','{variant}','{roi}','{n_sessions}',"
                         f"{str(folder)!r}],check=True);"
                         "print(time.perf_counter()-t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024)"],
                        capture_output=True, text=True, check=True).stdout.split()
                    runs[variant].append((float(out[0]), float(out[1])))
            row = {"sessions": n_sessions, "roi": roi, "voxels": sizes[roi]}
            for variant, values in runs.items():
                row[f"{variant}_wall_s"] = statistics.median(v[0] for v in values)
                row[f"{variant}_peak_rss_mb"] = statistics.median(v[1] for v in values)
            row["memory_ratio_naive_over_streamed"] = row["naive_peak_rss_mb"] / row["streamed_peak_rss_mb"]
            row["time_ratio_naive_over_streamed"] = row["naive_wall_s"] / row["streamed_wall_s"]
            rows.append(row)
            print(row, flush=True)
    machine = describe()
    cpu = machine["cpu"]
    result = {"machine": machine,
              "volume_xyz": VOLUME, "trials_per_session": TRIALS, "repeats": args.repeats, "rows": rows}
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "ingestion_streaming.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Streamed ROI extraction vs the naive way",
        "",
        f"Machine: {cpu}, {os.cpu_count()} cores. Volume {VOLUME} (X, Y, Z), {TRIALS} trials per session, "
        f"HDF5 chunked per trial. Medians of {args.repeats} runs, each in its own process (peak RSS of the process).",
        "Command: `.venv/bin/python bench/ingestion_streaming.py`",
        "",
        "| sessions | ROI | voxels | streamed s | naive s | streamed MB | naive MB | memory naive/streamed | time naive/streamed |",
        "|---|---|---|---|---|---|---|---|---|",
        *[f"| {r['sessions']} | {r['roi']} | {r['voxels']} | {r['streamed_wall_s']:.1f} | {r['naive_wall_s']:.1f} | "
          f"{r['streamed_peak_rss_mb']:.0f} | {r['naive_peak_rss_mb']:.0f} | {r['memory_ratio_naive_over_streamed']:.2f} | "
          f"{r['time_ratio_naive_over_streamed']:.2f} |" for r in rows],
    ]
    (out_dir / "ingestion_streaming.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
