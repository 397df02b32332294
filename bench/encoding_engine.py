"""Benchmark: encoding with X's folds diagonalised once per job against himalaya ``RidgeCV`` per voxel batch (CPU).

The encoding model of one (subject, feature) fits an L2 ridge with an alpha per voxel by
5-fold CV from the PCA features X (paper size: 24,980 training trials x 6,400 features,
2,770 test rows) to ~300,000 voxels, in batches of 4,096 voxels (``n_targets_batch``).

* ``himalaya``: the old :func:`brainldm.encoding.ridge_encoding` loop, reproduced here:
  one himalaya ``RidgeCV(alphas, cv=5, fit_intercept=True, solver_params={"local_alpha":
  True})`` per batch (it diagonalises X once per fold and once for the refit, for every
  batch), then the test predictions' Pearson r and R^2 against the test betas;
* ``engine``: what ``ridge_encoding`` does now: one :class:`brainldm.ridge.RidgeCVEngine`
  (X's folds and all rows diagonalised once, timed apart as the decomposition), then per
  batch ``engine.fit`` and the same r and R^2;
* ``data``: builds the same data and fits nothing (the memory floor).

Each variant runs ``--batches`` batches in its own process (peak RSS of the process);
wall time of every batch and of the engine's decomposition; data generation excluded.
Medians over batches and ``--repeats`` repeats; variants alternate within a repeat. The
totals for ``--voxels`` voxels are extrapolated from those medians: himalaya = batches x
its per-batch time; engine = one decomposition + batches x its per-batch time.

Sizes: ``--scale s`` multiplies the paper's training rows, features, test rows and voxels
per batch by ``s`` (default 1: the paper). Every cost of both variants is a product of
three of those sizes (X'X and the SVDs: rows x features^2; the decompositions:
features^3; himalaya's per-fold solution matrices: alphas x features^2 x rows; every
batch: alphas x rows x features x voxels), so all of them scale as ``s^3`` and their
ratios, the speed-up included, do not depend on ``s`` (in flops; BLAS efficiency does
change with size). The results file states the scale and gives the paper-size times
``s^-3`` times the measured ones as a flop-model estimate, not a measurement.

Results: ``bench/results/encoding_engine.md`` with the machine (``bench/machine.py``).

    nice -n 10 .venv/bin/python bench/encoding_engine.py [--scale 0.25] [--batches 2] [--repeats 3]
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

#: The paper's sizes (NSD subject 1: 24,980 training trials, 2,770 test rows per the issue; 6,400 PCA
#: features; ~300,000 whole-brain voxels in batches of the pipeline's n_targets_batch).
PAPER = {"train": 24980, "features": 6400, "test": 2770, "batch": 4096, "voxels": 300000}
VARIANTS = ("data", "himalaya", "engine")


def make_data(n_train: int, n_test: int, n_features: int, n_voxels: int, seed: int = 0):
    """X as :func:`brainldm.encoding.load_design` gives it (random with a decaying PCA-like spectrum,
    centred, one common scale), and betas planted on 64 features plus noise, float32."""
    from brainldm.ridge import Standardizer

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_train + n_test, n_features), dtype=np.float32)
    x *= np.geomspace(3, 0.3, n_features).astype(np.float32)
    scaler = Standardizer.fit_common_scale(x[:n_train])
    x_train, x_test = scaler.transform(x[:n_train]), scaler.transform(x[n_train:])
    informative = min(64, n_features)
    w = rng.standard_normal((informative, n_voxels), dtype=np.float32) / np.float32(np.sqrt(informative))
    y = np.vstack([x_train, x_test])[:, :informative] @ w
    y += 2.0 * rng.standard_normal(y.shape, dtype=np.float32)
    return x_train, y[:n_train], x_test, y[n_train:]


def child(args) -> None:
    """One variant in this process: per-batch wall times; prints a JSON line, saves r and alphas."""
    import himalaya.ridge  # noqa: F401  (imported before the clock by every variant)

    from brainldm.config import section_defaults
    from brainldm.ridge import RidgeCVEngine
    from brainldm.stats import pearson_r, r2_score

    batch = args.batch
    x_train, y_train, x_test, y_test = make_data(args.train, args.test, args.features, batch * args.batches)
    alphas = np.asarray(section_defaults("encoding")["alphas"], dtype=np.float64)
    out = {"variant": args.variant, "batch_s": []}
    r, best = [], []
    if args.variant == "engine":
        start = time.perf_counter()
        engine = RidgeCVEngine(x_train, x_test, alphas, cv=5, backend="numpy", standardize=False)
        out["decomposition_s"] = time.perf_counter() - start
    elif args.variant == "himalaya":
        from himalaya.backend import set_backend
        from himalaya.ridge import RidgeCV

        backend = set_backend("numpy")
    for b in range(args.batches if args.variant != "data" else 0):
        cols = slice(b * batch, (b + 1) * batch)
        start = time.perf_counter()
        y = y_train[:, cols]
        if args.variant == "engine":
            fit = engine.fit(y)
            prediction, alpha = fit.predictions, fit.best_alphas
        else:  # the old ridge_encoding's _ridge_cv: a RidgeCV per batch (its own decompositions)
            model = RidgeCV(alphas=alphas, cv=5, fit_intercept=True,
                            solver_params={"local_alpha": True, "n_alphas_batch": None, "warn": False})
            model.fit(x_train, y)
            prediction = np.asarray(backend.to_numpy(model.predict(x_test)), dtype=np.float32)
            alpha = np.asarray(backend.to_numpy(model.best_alphas_), dtype=np.float64)
            del model
        r.append(pearson_r(prediction, y_test[:, cols]))
        r2_score(prediction, y_test[:, cols])
        best.append(alpha)
        del prediction
        out["batch_s"].append(time.perf_counter() - start)
    if r:
        np.save(args.save / f"{args.variant}_r.npy", np.concatenate(r))
        np.save(args.save / f"{args.variant}_alpha.npy", np.concatenate(best))
        out["median_r"] = float(np.median(np.concatenate(r)))
    print("RESULT " + json.dumps(out), flush=True)


def measure(args, variant: str, save: Path) -> dict:
    """Run ``variant`` in a child process; its result and peak RSS (MiB, ``wait4``'s rusage of that child)."""
    command = [sys.executable, __file__, "--child", "--variant", variant, "--save", str(save)]
    for flag in ("train", "features", "test", "batch", "batches"):
        command += [f"--{flag}", str(getattr(args, flag))]
    load = os.getloadavg()[0]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:  # files: no pipe to fill
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{variant} failed:\n{stderr[-4000:]}")
    line = next(line for line in stdout.splitlines() if line.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    result.update({"load_1min": load, "peak_rss_mib": usage.ru_maxrss / 1024})  # Linux: KiB
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the paper's rows, features, test, batch")
    parser.add_argument("--batches", type=int, default=2, help="voxel batches fitted per variant and repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--voxels", type=int, default=PAPER["voxels"], help="paper voxels extrapolated to")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "encoding_engine.md")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="data", help=argparse.SUPPRESS)
    parser.add_argument("--save", type=Path, help=argparse.SUPPRESS)
    for flag in ("train", "features", "test", "batch"):
        parser.add_argument(f"--{flag}", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    for flag in ("train", "features", "test", "batch"):
        setattr(args, flag, max(1, round(PAPER[flag] * args.scale)))

    from machine import describe

    import himalaya

    started, load_start = time.time(), os.getloadavg()
    runs = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="bench_encoding_engine_") as tmp:
        for repeat in range(args.repeats):
            for variant in VARIANTS:
                if variant == "data" and repeat > 0:
                    continue  # the memory floor does not vary
                save = Path(tmp) / str(repeat)
                save.mkdir(exist_ok=True)
                result = measure(args, variant, save)
                runs[variant].append(result)
                print(f"[{time.time() - started:6.0f} s] repeat {repeat + 1}/{args.repeats} {variant} "
                      f"(load {result['load_1min']:.1f}): batches {[round(t, 1) for t in result['batch_s']]} s"
                      + (f", decomposition {result['decomposition_s']:.1f} s" if "decomposition_s" in result else "")
                      + f", peak RSS {result['peak_rss_mib']:.0f} MiB", flush=True)
        r = {v: np.load(Path(tmp) / "0" / f"{v}_r.npy") for v in ("himalaya", "engine")}
        alpha = {v: np.load(Path(tmp) / "0" / f"{v}_alpha.npy") for v in ("himalaya", "engine")}
    agreement = {"max_abs_r_difference": float(np.abs(r["engine"] - r["himalaya"]).max()),
                 "same_alpha_fraction": float(np.isclose(alpha["engine"], alpha["himalaya"], rtol=1e-5).mean()),
                 "median_r": float(np.median(r["engine"]))}
    write_markdown(args, runs, agreement, describe(), himalaya.__version__, load_start, time.time() - started)


def _batches(n: int) -> str:
    return f"{n} batch" + ("es" if n != 1 else "")


def write_markdown(args, runs: dict, agreement: dict, machine: dict, himalaya_version: str, load_start,
                   elapsed: float) -> None:
    s = args.scale
    per_batch = {v: statistics.median(t for run in runs[v] for t in run["batch_s"]) for v in ("himalaya", "engine")}
    decomposition = statistics.median(run["decomposition_s"] for run in runs["engine"])
    rss = {v: statistics.median(run["peak_rss_mib"] for run in runs[v]) for v in VARIANTS}
    n_batches = args.voxels / PAPER["batch"]  # batch-equivalents: the same count at every scale
    measured = {"himalaya": statistics.median(sum(run["batch_s"]) for run in runs["himalaya"]),
                "engine": statistics.median(run["decomposition_s"] + sum(run["batch_s"]) for run in runs["engine"])}
    total = {"himalaya": n_batches * per_batch["himalaya"], "engine": decomposition + n_batches * per_batch["engine"]}
    paper = {v: t / s**3 for v, t in total.items()}  # flop model: every cost is cubic in the scale
    loads = [run["load_1min"] for v in runs for run in runs[v]]

    def hours(seconds: float) -> str:
        return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"

    command = "`nice -n 10 .venv/bin/python bench/encoding_engine.py"
    for flag, default in (("scale", 1.0), ("batches", 2), ("repeats", 3)):
        if getattr(args, flag) != default:
            command += f" --{flag} {getattr(args, flag):g}"
    command += "`"
    scaled = s != 1
    lines = [
        "# Encoding: X's folds diagonalised once per job (`RidgeCVEngine`) vs himalaya `RidgeCV` per voxel batch (CPU)",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores (shared with other jobs), GPU: {machine['gpu'] or 'none'}, "
        f"Python {machine['python']}, numpy {np.__version__}, himalaya {himalaya_version} (numpy backend). "
        f"Command: {command}.",
        "",
        f"Sizes: X {args.train:,} training rows x {args.features:,} features (random, float32, centred, one common "
        f"scale), {args.test:,} test rows, batches of {args.batch:,} voxels, {_batches(args.batches)} per variant and "
        f"repeat; 5-fold CV over the 15 alphas of the encoding defaults; alpha per voxel, intercept.",
    ]
    if scaled:
        lines.append(
            f"**Scaled down**: the paper's sizes (24,980 x 6,400, 2,770 test rows, batches of 4,096) times {s:g} "
            f"each, because at the paper's size one himalaya batch alone would take about "
            f"{hours(per_batch['himalaya'] / s**3)} on these cores (flop model below). Every cost of "
            "both variants is a product of three of these sizes, so it scales as scale^3 and their ratios are those "
            "of the paper's size in flops (BLAS efficiency changes with size, so as an estimate).")
    lines += [
        f"Each variant runs in its own process; wall times of each batch (fit, test predictions, r and R^2) and of "
        f"the engine's decomposition; medians over batches and {args.repeats} repeat{'s' if args.repeats != 1 else ''}, variants alternating. Load "
        f"average (1 min) at the start: {load_start[0]:.1f}; at the start of the runs: {min(loads):.1f}-"
        f"{max(loads):.1f} on {machine['cores']} cores (wall times on a shared machine). Elapsed: "
        f"{elapsed / 60:.0f} min.",
        "",
        "## Measured",
        "",
        "| variant | decomposition (s, once per job) | per batch (s, median) | batches, s (all runs) | "
        f"{_batches(args.batches)} incl. decomposition (s, median) | peak RSS (MiB) |",
        "|---|---|---|---|---|---|",
    ]
    for v, label in (("himalaya", "himalaya `RidgeCV` per batch (old)"), ("engine", "`RidgeCVEngine` (now)")):
        times = ", ".join(f"{t:.1f}" for run in runs[v] for t in run["batch_s"])
        dec = f"{decomposition:.1f}" if v == "engine" else "- (inside every batch)"
        lines.append(f"| {label} | {dec} | {per_batch[v]:.1f} | {times} | {measured[v]:.1f} | {rss[v]:.0f} |")
    lines += [
        f"| data only | | | | | {rss['data']:.0f} |",
        "",
        f"Measured ratio, {_batches(args.batches)}: himalaya / engine = **{measured['himalaya'] / measured['engine']:.1f}x**"
        f"; per batch alone: **{per_batch['himalaya'] / per_batch['engine']:.1f}x**.",
        f"Same results: max |r engine - r himalaya| over the {args.batches * args.batch:,} voxels = "
        f"{agreement['max_abs_r_difference']:.1e}; same alpha for {100 * agreement['same_alpha_fraction']:.2f}% of "
        f"them; median test r {agreement['median_r']:.3f}.",
        "",
        f"## Extrapolated to {args.voxels:,} voxels ({n_batches:.1f} batches of 4,096)",
        "",
        "Extrapolated, not measured: himalaya = batches x its median per-batch time; engine = its decomposition + "
        "batches x its median per-batch time" + (f" (batches of {args.batch:,} voxels at this scale: the same number "
                                                 "of batches as the paper's)." if scaled else "."),
        "",
        "| variant | total, this scale | total, paper size (flop model: x scale^-3) |" if scaled else
        "| variant | total |",
        "|---|---|---|" if scaled else "|---|---|",
    ]
    for v, label in (("himalaya", "himalaya `RidgeCV` per batch (old)"), ("engine", "`RidgeCVEngine` (now)")):
        lines.append(f"| {label} | {hours(total[v])} |" + (f" {hours(paper[v])} |" if scaled else ""))
    lines += [
        "",
        f"**Extrapolated ratio himalaya / engine: {total['himalaya'] / total['engine']:.1f}x** "
        f"({'at this scale; the same in the flop model at the paper size' if scaled else 'at the paper size'}). "
        f"The decomposition is {100 * decomposition / total['engine']:.1f}% of the engine's total.",
        "",
        "## Reading",
        "",
        "* himalaya's `RidgeCV` repeats for every batch an SVD of each fold's training rows and of all rows, and "
        "per fold builds the solution matrices of all 15 alphas (15 x features x training rows, "
        f"{15 * args.features * (args.train - args.train // 5) * 4 / 2**20:.0f} MiB here, "
        f"{15 * PAPER['features'] * (PAPER['train'] - PAPER['train'] // 5) * 4 / 2**30:.1f} GiB at the paper's "
        "size) and multiplies them with "
        "the batch's training betas: per fold, alpha and voxel, training rows x features multiply-adds, plus the "
        "matrices themselves (15 x features^2 x training rows per fold, whatever the batch size).",
        "* `RidgeCVEngine` eigendecomposes the 6 Gram matrices (float64, features x features) once per job; a "
        "batch then costs, per fold and alpha, the product of the fold's rotated validation rows with the batch's "
        "rotated X'Y (validation rows x features per voxel: a fifth of himalaya's products with the betas), plus "
        "X'Y itself.",
        "* In flops per batch, himalaya / engine is about 4 x features / batch + 5 (6.25 + 5 at the paper's sizes, "
        "the SVDs not counted); the engine's decomposition is shared by all batches, so the ratio of the totals "
        "tends to the per-batch one. The measured ratios also carry BLAS efficiency and the machine's load.",
        f"* Measured per batch: {per_batch['himalaya'] / per_batch['engine']:.1f}x against the flop estimate "
        f"{4 * args.features / args.batch + 5:.1f}x at these sizes: himalaya also runs the SVDs and builds its "
        "solution matrices with an element-wise product over all 15 alphas (memory-bound) before each product, "
        "where the engine's batch is a few large float32 matrix products.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
