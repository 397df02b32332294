"""Benchmark: the batched encoding fit on a GPU (himalaya ``torch_cuda``), with a CPU baseline.

What is timed is the pipeline's own function, :func:`brainldm.encoding.ridge_encoding`
(RidgeCV, an alpha per voxel by 5-fold CV over 15 alphas, voxels in batches of
``n_targets_batch``, then test r / p / FDR), on data held in host memory as the
pipeline holds it (each batch of betas is sent to the device by himalaya).

* ``gpu_large``: ``torch_cuda`` at NSD-like size (default 16,000 training trials x
  6,400 PCA features -> 32,768 voxels, 982 test images, batches of 16,384);
* ``gpu_small`` and ``cpu_small``: the same fit at a size the CPU finishes quickly
  (5,000 x 6,400 -> 4,096 voxels, one batch) on ``torch_cuda`` and on ``numpy``:
  the ratio of the two is the device's speed-up, both measured in this run.

Medians of ``--repeats`` runs after one warm-up (CUDA context, cuSOLVER handles);
GPU peak memory from ``torch.cuda.max_memory_allocated``. Sized to finish in
under ~5 minutes on one H100; ``--budget-s`` stops starting new repeats past it
(the results say how many ran). Without CUDA the script exits at once with a
message (``--smoke`` runs tiny sizes on the CPU ``torch`` backend to check the
script itself). Results: ``bench/results/encoding_device.{json,md}``.

On the device machine (himalaya, h5py, nibabel, statsmodels and scipy importable):

    PYTHONPATH=src python bench/encoding_device.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))


def make_data(n_samples: int, n_features: int, n_voxels: int, n_test: int, seed: int = 0):
    """Standard-normal X; voxels depend on 64 features plus noise (float32, host memory)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_samples + n_test, n_features), dtype=np.float32)
    informative = min(64, n_features)
    w = (rng.standard_normal((informative, n_voxels), dtype=np.float32) / np.sqrt(informative)).astype(np.float32)
    y = x[:, :informative] @ w
    y += 2.0 * rng.standard_normal(y.shape, dtype=np.float32)
    return x[:n_samples], y[:n_samples], x[n_samples:], y[n_samples:]


def timed_runs(name, data, backend, batch, repeats, deadline, torch=None) -> dict:
    from brainldm.encoding import ridge_encoding

    x_train, y_train, x_test, y_test = data
    settings = {"backend": backend, "n_targets_batch": batch, "cv": 5}
    times, peaks = [], []
    for k in range(repeats):
        if k and time.time() > deadline:
            print(f"{name}: budget reached after {k} run(s)", flush=True)
            break
        if torch is not None and backend == "torch_cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        result = ridge_encoding(x_train, y_train, x_test, y_test, settings)
        if torch is not None and backend == "torch_cuda":
            torch.cuda.synchronize()
            peaks.append(torch.cuda.max_memory_allocated() / 2**30)
        times.append(time.perf_counter() - start)
        print(f"{name} run {k + 1}: {times[-1]:.2f} s", flush=True)
    median = statistics.median(times)
    return {
        "backend": backend, "samples": len(x_train), "features": x_train.shape[1], "voxels": y_train.shape[1],
        "test": len(x_test), "n_targets_batch": batch, "runs_s": times, "median_s": median,
        "voxels_per_s": y_train.shape[1] / median, "gpu_peak_gib": max(peaks) if peaks else None,
        "median_test_r": float(np.median(result.stats.r)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=16000)
    parser.add_argument("--features", type=int, default=6400)
    parser.add_argument("--voxels", type=int, default=32768)
    parser.add_argument("--batch", type=int, default=16384)
    parser.add_argument("--test", type=int, default=982)
    parser.add_argument("--small-samples", type=int, default=5000)
    parser.add_argument("--small-voxels", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=270.0, help="no new repeat starts after this")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU torch backend (checks the script)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "encoding_device"))
    args = parser.parse_args()

    try:
        import torch
    except ImportError:
        sys.exit("encoding_device: torch is not installed; this benchmark needs torch with CUDA (himalaya torch_cuda)")
    if args.smoke:
        gpu = "torch"
        args.samples, args.features, args.voxels, args.batch, args.test = 400, 200, 1000, 500, 60
        args.small_samples, args.small_voxels = 300, 256
        args.out = args.out + "_smoke"
    elif not torch.cuda.is_available():
        sys.exit("encoding_device: CUDA is not available (torch.cuda.is_available() is False): this benchmark "
                 "measures the torch_cuda backend and needs a GPU; nothing was measured. "
                 "Use bench/encoding_batching.py for the CPU, or --smoke to check this script.")
    else:
        gpu = "torch_cuda"

    from machine import describe

    started = time.time()
    deadline = started + args.budget_s
    print("warm-up", flush=True)
    warm = make_data(256, 64, 64, 32, seed=1)
    from brainldm.encoding import ridge_encoding

    ridge_encoding(*warm, {"backend": gpu, "n_targets_batch": 64})
    small = make_data(args.small_samples, args.features, args.small_voxels, args.test)
    results = {
        "gpu_small": timed_runs("gpu_small", small, gpu, args.small_voxels, args.repeats, deadline, torch),
        "cpu_small": timed_runs("cpu_small", small, "numpy", args.small_voxels, args.repeats, deadline),
    }
    del small
    large = make_data(args.samples, args.features, args.voxels, args.test)
    results["gpu_large"] = timed_runs("gpu_large", large, gpu, args.batch, args.repeats, deadline + 60, torch)
    del large
    results["gpu_speedup_small"] = results["cpu_small"]["median_s"] / results["gpu_small"]["median_s"]
    report = {"benchmark": "encoding_device", "machine": describe(), "backend": gpu, "smoke": args.smoke,
              "results": results, "elapsed_s": time.time() - started,
              "notes": ["ridge_encoding: RidgeCV 5 folds x 15 alphas per voxel, test r/p/FDR; data in host memory",
                        "gpu_speedup_small: cpu_small median / gpu_small median, same data, same run"]}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    m = report["machine"]
    lines = [
        "# Encoding on a GPU (himalaya torch_cuda)",
        "",
        f"Machine: {m.get('gpu')}, {m['cpu']} ({m['cores']} cores), torch {m.get('torch')}."
        + (" SMOKE RUN (CPU torch backend, tiny sizes): not a measurement." if args.smoke else ""),
        "",
        "| run | backend | samples x features -> voxels | batch | median s | voxels / s | GPU peak GiB | runs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ("gpu_small", "cpu_small", "gpu_large"):
        r = results[name]
        peak = f"{r['gpu_peak_gib']:.1f}" if r["gpu_peak_gib"] is not None else "-"
        lines.append(f"| {name} | {r['backend']} | {r['samples']} x {r['features']} -> {r['voxels']} | "
                     f"{r['n_targets_batch']} | {r['median_s']:.2f} | {r['voxels_per_s']:.0f} | {peak} | {len(r['runs_s'])} |")
    lines += ["", f"GPU speed-up over the CPU (numpy, same machine, small size): {results['gpu_speedup_small']:.1f}x.",
              f"Elapsed: {report['elapsed_s']:.0f} s.", ""]
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
