"""Benchmark: voxel-batched encoding fits against one model per voxel (himalaya, CPU).

The encoding models fit an L2 ridge with an alpha per voxel by 5-fold CV from a
PCA feature matrix X (n_samples x n_features) to every voxel. himalaya's
``RidgeCV`` decomposes X once per fold and then solves every voxel of a batch
with matrix products, so the cost of the decompositions is shared by the whole
batch. The baseline is the obvious loop: one ``RidgeCV`` per voxel (the same
library, the same CV, ``n_targets_batch=1``).

Variants, each run in its own process (wall time of the fit only; peak RSS of
the process, minus that of a process that only builds the same data):

* ``batch=<B>``: :func:`brainldm.encoding.ridge_encoding` with ``n_targets_batch=B``
  over all voxels (the pipeline's code: reads a batch of columns, fits, predicts
  the test set, r / p / FDR);
* ``loop``: the same function with ``n_targets_batch=1`` on ``--loop-voxels``
  voxels only; its time per voxel is extrapolated to all voxels (a loop over
  20,000 voxels would take days on 2 cores). This is stated in the results.

Sizes: the issue asks for at least 5,000 samples, 6,400 features and 20,000
voxels. ``--samples/--features/--voxels`` scale them down where a machine cannot
run that in reasonable time; the results file records the sizes used.

Results: ``bench/results/encoding_batching.{json,md}`` with the machine
(``bench/machine.py``), medians of ``--repeats`` runs and ratios against the
loop measured in the same run.

    .venv/bin/python bench/encoding_batching.py [--samples 5000 --features 6400 --voxels 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))


def make_data(n_samples: int, n_features: int, n_voxels: int, n_test: int, seed: int = 0):
    """Standardised X, and Y whose voxels depend on 64 of the features plus noise."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_samples + n_test, n_features), dtype=np.float32)
    informative = min(64, n_features)
    w = (rng.standard_normal((informative, n_voxels), dtype=np.float32) / np.sqrt(informative)).astype(np.float32)
    y = x[:, :informative] @ w
    y += 2.0 * rng.standard_normal(y.shape, dtype=np.float32)
    return x[:n_samples], y[:n_samples], x[n_samples:], y[n_samples:]


def child(args) -> None:
    """One measurement in this process; prints a JSON line."""
    data = make_data(args.samples, args.features, args.voxels, args.test)  # the same data in every variant
    out = {"variant": args.variant}
    if args.variant != "data":
        from brainldm.encoding import ridge_encoding

        x_train, y_train, x_test, y_test = data
        if args.variant == "loop":  # views of the first voxels: no copy, the same memory baseline
            y_train, y_test = y_train[:, :args.loop_voxels], y_test[:, :args.loop_voxels]
        batch = 1 if args.variant == "loop" else int(args.variant.split("=")[1])
        settings = {"n_targets_batch": batch, "backend": args.backend, "cv": 5}
        start = time.perf_counter()
        result = ridge_encoding(x_train, y_train, x_test, y_test, settings)
        out["fit_s"] = time.perf_counter() - start
        out["n_voxels"] = y_train.shape[1]
        out["median_r"] = float(np.median(result.stats.r))
    print("RESULT " + json.dumps(out), flush=True)


def measure(args, variant: str) -> dict:
    """Run ``variant`` in a child process; return its result and peak RSS (MiB)."""
    command = [sys.executable, __file__, "--child", "--variant", variant, "--samples", str(args.samples),
               "--features", str(args.features), "--voxels", str(args.voxels), "--test", str(args.test),
               "--loop-voxels", str(args.loop_voxels), "--backend", args.backend]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    stdout, stderr = process.stdout.read(), process.stderr.read()
    process.stdout.close()
    process.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{variant} failed:\n{stderr[-4000:]}")
    line = next(line for line in stdout.splitlines() if line.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    result["peak_rss_mib"] = usage.ru_maxrss / 1024  # Linux: KiB
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--features", type=int, default=6400)
    parser.add_argument("--voxels", type=int, default=20000)
    parser.add_argument("--test", type=int, default=500, help="test images (NSD: 982)")
    parser.add_argument("--batches", type=int, nargs="+", default=[20000],
                        help="n_targets_batch values (capped at --voxels)")
    parser.add_argument("--loop-voxels", type=int, default=1, help="voxels fitted one by one (extrapolated)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backend", default="numpy")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "encoding_batching"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from machine import describe

    batches = sorted({min(b, args.voxels) for b in args.batches}, reverse=True)
    variants = ["data", *[f"batch={b}" for b in batches], "loop"]
    runs = {v: [] for v in variants}
    started = time.time()
    load_before = os.getloadavg()
    for repeat in range(args.repeats):
        for variant in variants:
            if variant == "data" and repeat > 0:
                continue  # the data-only baseline does not vary
            result = measure(args, variant)
            runs[variant].append(result)
            print(f"[{time.time() - started:7.0f} s] run {repeat + 1}/{args.repeats} {variant}: "
                  f"{result.get('fit_s', 0):.2f} s, peak {result['peak_rss_mib']:.0f} MiB", flush=True)
    data_rss = runs["data"][0]["peak_rss_mib"]
    summary = {}
    for variant in variants[1:]:
        times = [r["fit_s"] for r in runs[variant]]
        n = runs[variant][0]["n_voxels"]
        median = statistics.median(times)
        summary[variant] = {
            "fit_s_runs": times, "fit_s_median": median, "voxels_fitted": n,
            "voxels_per_s": n / median,
            "peak_rss_mib_median": statistics.median(r["peak_rss_mib"] for r in runs[variant]),
            "fit_rss_mib_median": statistics.median(r["peak_rss_mib"] for r in runs[variant]) - data_rss,
            "median_test_r": runs[variant][0]["median_r"],
        }
    loop = summary["loop"]
    loop["extrapolated_s_all_voxels"] = args.voxels / loop["voxels_per_s"]
    for variant in variants[1:-1]:
        summary[variant]["speedup_vs_loop"] = summary[variant]["voxels_per_s"] / loop["voxels_per_s"]
    results = {
        "benchmark": "encoding_batching",
        "machine": describe(),
        "sizes": {"samples": args.samples, "features": args.features, "voxels": args.voxels, "test": args.test,
                  "loop_voxels": args.loop_voxels, "cv_folds": 5, "alphas": 15, "backend": args.backend},
        "issue_sizes": {"samples": 5000, "features": 6400, "voxels": 20000},
        "repeats": args.repeats,
        "data_only_peak_rss_mib": data_rss,
        "variants": summary,
        "notes": [
            f"loop: one RidgeCV per voxel, timed on {args.loop_voxels} voxels per run and extrapolated per voxel "
            f"to {args.voxels} voxels",
            "peak RSS is the whole process (data included); fit_rss subtracts a process that only builds the data",
            "wall times of the fit only (data generation excluded); medians over repeats",
        ],
        "elapsed_s": time.time() - started,
        "load_average_before_after": [list(load_before), list(os.getloadavg())],
        "blas_threads_env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    m = results["machine"]
    lines = [
        "# Encoding: voxel-batched ridge vs one model per voxel",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, backend `{args.backend}`.",
        f"Sizes: {args.samples} samples x {args.features} features -> {args.voxels} voxels, {args.test} test rows, "
        f"5-fold CV over 15 alphas (the issue's target: 5,000 x 6,400 -> 20,000). Medians of {args.repeats} runs.",
        f"The loop is timed on {args.loop_voxels} voxel(s) per run and extrapolated per voxel. Every process builds "
        "the same data (all voxels); the BLAS thread count is recorded in the JSON.",
        "",
        "| variant | voxels fitted | fit time (s, median) | voxels / s | speed-up vs loop | peak RSS (MiB) | fit RSS above data (MiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for variant, row in summary.items():
        lines.append(
            f"| {variant} | {row['voxels_fitted']} | {row['fit_s_median']:.2f} | {row['voxels_per_s']:.2f} | "
            f"{row.get('speedup_vs_loop', 1.0):.0f}x | {row['peak_rss_mib_median']:.0f} | {row['fit_rss_mib_median']:.0f} |"
        )
    lines += [
        "",
        f"Loop extrapolated to all {args.voxels} voxels: {loop['extrapolated_s_all_voxels'] / 3600:.1f} h "
        f"(batched: {min(summary[v]['fit_s_median'] for v in variants[1:-1]):.0f} s).",
        f"Data-only process peak RSS: {data_rss:.0f} MiB. Load average (1 min) before / after: "
        f"{load_before[0]:.1f} / {os.getloadavg()[0]:.1f} (other processes on the machine slow every variant alike).",
        "",
        "Why: RidgeCV's cost is dominated by decomposing X once per fold and once for the refit (an SVD, then the",
        "solution matrices of every alpha); a batch shares them over all its voxels, and each batch repeats them.",
        "Memory grows with the batch (Y batch, CV predictions for every alpha, weights).",
        "",
    ]
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
