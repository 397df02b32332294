"""Benchmark: streamed ROI extraction against the naive way, at NSD's real volume shape and chunking.

A synthetic subject at subj01's volume shape (81 x 104 x 83, ellipsoid brain),
750 trials per session, HDF5 betas laid out as NSD ships them: int16
(trials, Z, Y, X), chunks ``[1 1 1 750]`` in MATLAB order (h5py chunks
(750, 1, 1, 1): one uncompressed chunk per voxel holding all its trials).

Reads: per session, the time of :func:`brainldm.nsd.betas.read_session` on the
whole-brain ROI (and the nsdgeneral-sized one) against ONE whole-file read of
the same session (``h5["betas"][()]``), same file, same process, warm page cache
(each file is read once before timing; the machine's RAM holds every file),
median over sessions and repeats, alternating the order.

Extraction, for each ROI and number of sessions:

* streamed: :func:`brainldm.nsd.betas.stream_roi_betas` (the pipeline's code,
  writing its HDF5 output, z-scoring per session);
* naive: load each session's whole array, mask it and z-score it, keep every
  session in memory, average the test repetitions and save (the original code's way).

Every 10th trial shows one of 100 test images, so the test set is bounded as in NSD.

Each extraction runs in its own process; wall time and peak RSS (``ru_maxrss``
of the child) are recorded. The generated files (~1.1 GB a session) are deleted
at the end unless ``--workdir`` is given. Results:
``bench/results/ingestion_streaming.{json,md}``.

    .venv/bin/python bench/ingestion_streaming.py [--sessions 3 6] [--repeats 3] [--read-repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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
            # NSD's layout: MATLAB chunks [1 1 1 750], one uncompressed chunk per voxel
            data = h5.create_dataset("betas", shape=(TRIALS,) + VOLUME[::-1], dtype=np.int16,
                                     chunks=(TRIALS, 1, 1, 1))
            in_brain = brain.reshape(VOLUME).T  # (Z, Y, X)
            for z in range(VOLUME[2]):  # plane by plane of all trials: each chunk written once
                plane = np.zeros((TRIALS,) + in_brain.shape[1:], np.int16)
                plane[:, in_brain[z]] = rng.integers(-900, 900, size=(TRIALS, in_brain[z].sum()), dtype=np.int16)
                data[:, z] = plane
    for name, index in rois.items():
        np.save(folder / f"{name}.npy", index)
    return {name: len(index) for name, index in rois.items()}


def measure_reads(folder: Path, n_sessions: int, repeats: int) -> dict:
    """Seconds per session of ``read_session`` (each ROI) and of one whole-file read, warm cache."""
    import h5py

    from brainldm.nsd.betas import read_session

    rois = {name: np.load(folder / f"{name}.npy") for name in ("brain", "nsdgeneral_like")}
    times = {"whole_file": [], **{name: [] for name in rois}}

    def whole(path):
        with h5py.File(path, "r") as h5:
            return h5["betas"][()]

    for session in range(1, n_sessions + 1):
        path = folder / f"betas_session{session:02d}.hdf5"
        whole_session = whole(path)  # warm the page cache, and check the reader against it
        for name, index in rois.items():
            got = read_session(path, index, VOLUME)
            reference = whole_session.transpose(0, 3, 2, 1).reshape(TRIALS, -1)[:, index] / np.float32(300)
            assert np.array_equal(got, reference.astype(np.float32)), f"{path}: {name} differs"
            del got, reference
        del whole_session
        for repeat in range(repeats):
            order = ["whole_file", *rois] if repeat % 2 == 0 else [*rois, "whole_file"]
            for what in order:
                start = time.perf_counter()
                out = whole(path) if what == "whole_file" else read_session(path, rois[what], VOLUME)
                times[what].append(time.perf_counter() - start)
                del out
        print({k: [round(t, 2) for t in v] for k, v in times.items()}, flush=True)
    medians = {f"{k}_s": statistics.median(v) for k, v in times.items()}
    return {
        "sessions": n_sessions, "repeats_per_session": repeats, "cache": "warm",
        "samples_s": times, "median_s": medians,
        "ratio_brain_over_whole_file": medians["brain_s"] / medians["whole_file_s"],
        "ratio_nsdgeneral_like_over_whole_file": medians["nsdgeneral_like_s"] / medians["whole_file_s"],
    }


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

    from brainldm.nsd.betas import stream_roi_betas

    index = np.load(folder / f"{roi}.npy")
    trials = benchmark_trials(n_sessions)
    files = {s: str(folder / f"betas_session{s:02d}.hdf5") for s in range(1, n_sessions + 1)}
    with tempfile.TemporaryDirectory(dir=folder) as out:
        stream_roi_betas(trials, files, {roi: index}, VOLUME, np.eye(4), {roi: f"{out}/{roi}.h5"})


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


def _table_row(r: dict) -> str:
    """One markdown row; a naive run killed for memory shows its peak RSS as a lower bound."""
    failed = r.get("naive_failed")
    naive_s = f"{failed['why']} after {failed['wall_s']:.0f} s" if failed else f"{r['naive_wall_s']:.1f}"
    naive_mb = f"\u2265 {failed['peak_rss_mb_at_least']:.0f}" if failed else f"{r['naive_peak_rss_mb']:.0f}"
    memory = ("\u2265 " if failed else "") + f"{r['memory_ratio_naive_over_streamed']:.2f}"
    time_ratio = "-" if failed else f"{r['time_ratio_naive_over_streamed']:.2f}"
    return (f"| {r['sessions']} | {r['roi']} | {r['voxels']} | {r['streamed_wall_s']:.1f} | {naive_s} | "
            f"{r['streamed_peak_rss_mb']:.0f} | {naive_mb} | {memory} | {time_ratio} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[3, 6])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each extraction variant")
    parser.add_argument("--read-sessions", type=int, default=3, help="sessions timed by the read measure")
    parser.add_argument("--read-repeats", type=int, default=2, help="timed reads per session and variant")
    parser.add_argument("--workdir", default=None, help="folder for the generated betas (kept; ~1.1 GB a session)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        variant, roi, n, folder = args.child
        (run_streamed if variant == "streamed" else run_naive)(Path(folder), roi, int(n))
        return

    folder = Path(args.workdir or tempfile.mkdtemp(prefix="bench_ingestion_"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        start = time.perf_counter()
        sizes = make_subject(folder, max(args.sessions))
        print(f"wrote {max(args.sessions)} sessions in {time.perf_counter() - start:.0f} s", flush=True)
        reads = measure_reads(folder, min(args.read_sessions, max(args.sessions)), args.read_repeats)
        print(reads["median_s"], flush=True)
        rows = []
        for n_sessions in args.sessions:
            for roi in sizes:
                runs = {"streamed": [], "naive": []}
                failed = {}
                for _ in range(args.repeats):
                    for variant in runs:
                        if variant in failed:
                            continue
                        # ru_maxrss of children is a running maximum: measure each child alone; it also
                        # counts a child the kernel killed for memory, so a lower bound is kept then
                        out = subprocess.run(
                            [sys.executable, "-c",
                             "import resource,subprocess,sys,time;t=time.perf_counter();"
                             f"rc=subprocess.run([sys.executable,{__file__!r},'--child','{variant}','{roi}',"
                             f"'{n_sessions}',{str(folder)!r}]).returncode;"
                             "print(time.perf_counter()-t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024, rc)"],
                            capture_output=True, text=True, check=True).stdout.split()
                        wall, rss, rc = float(out[0]), float(out[1]), int(out[2])
                        if rc != 0:
                            if variant == "streamed":
                                raise RuntimeError(f"streamed extraction failed (rc {rc}): {roi}, {n_sessions} sessions")
                            # the naive way holds every session: on a shared machine it may not fit
                            failed[variant] = {"returncode": rc, "wall_s": wall, "peak_rss_mb_at_least": rss,
                                               "why": "killed for memory" if rc == -9 else "failed"}
                            continue
                        runs[variant].append((wall, rss))
                row = {"sessions": n_sessions, "roi": roi, "voxels": sizes[roi]}
                for variant, values in runs.items():
                    if variant in failed:
                        row[f"{variant}_wall_s"] = row[f"{variant}_peak_rss_mb"] = None
                        row[f"{variant}_failed"] = failed[variant]
                        continue
                    row[f"{variant}_wall_s"] = statistics.median(v[0] for v in values)
                    row[f"{variant}_peak_rss_mb"] = statistics.median(v[1] for v in values)
                naive_mb = row["naive_peak_rss_mb"] or failed.get("naive", {}).get("peak_rss_mb_at_least")
                row["memory_ratio_naive_over_streamed"] = naive_mb / row["streamed_peak_rss_mb"]
                row["time_ratio_naive_over_streamed"] = (
                    row["naive_wall_s"] / row["streamed_wall_s"] if row["naive_wall_s"] is not None else None)
                rows.append(row)
                print(row, flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(folder, ignore_errors=True)
    machine = describe()
    cpu = machine["cpu"]
    command = " ".join([".venv/bin/python", "bench/ingestion_streaming.py", *sys.argv[1:]])
    layout = "HDF5 int16 (trials, Z, Y, X), chunks (750, 1, 1, 1) uncompressed (NSD's MATLAB [1 1 1 750])"
    result = {"machine": machine, "command": command, "volume_xyz": VOLUME, "trials_per_session": TRIALS,
              "hdf5_layout": layout, "repeats": args.repeats, "reads": reads, "rows": rows}
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "ingestion_streaming.json").write_text(json.dumps(result, indent=2) + "\n")
    med = reads["median_s"]
    lines = [
        "# Streamed ROI extraction vs the naive way",
        "",
        f"Machine: {cpu}, {os.cpu_count()} cores. Volume {VOLUME} (X, Y, Z), {TRIALS} trials per session, "
        f"{layout}.",
        f"Command: `{command}`",
        "",
        "## HDF5 read per session",
        "",
        f"`read_session` vs one whole-file read `h5[\"betas\"][()]` of the same session, same process, warm page "
        f"cache; medians of {reads['repeats_per_session']} reads x {reads['sessions']} sessions, order alternated.",
        "",
        "| read | voxels | s per session | / whole-file read |",
        "|---|---|---|---|",
        f"| whole file `h5[\"betas\"][()]` | {int(np.prod(VOLUME))} | {med['whole_file_s']:.2f} | 1.00 |",
        f"| `read_session`, brain | {sizes['brain']} | {med['brain_s']:.2f} | {reads['ratio_brain_over_whole_file']:.2f} |",
        f"| `read_session`, nsdgeneral_like | {sizes['nsdgeneral_like']} | {med['nsdgeneral_like_s']:.2f} | "
        f"{reads['ratio_nsdgeneral_like_over_whole_file']:.2f} |",
        "",
        "## Extraction: streamed vs naive",
        "",
        f"Medians of {args.repeats} runs, each in its own process (peak RSS of the process).",
        "",
        "| sessions | ROI | voxels | streamed s | naive s | streamed MB | naive MB | memory naive/streamed | time naive/streamed |",
        "|---|---|---|---|---|---|---|---|---|",
        *[_table_row(r) for r in rows],
    ]
    if any("naive_failed" in r for r in rows):
        lines += ["", "\u2265: the naive run was killed for memory (the machine's other work included); its peak "
                  "RSS is the one reached when killed, a lower bound."]
    (out_dir / "ingestion_streaming.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
