"""Benchmark: the decoder's ridge (alpha per target, himalaya backend) against scikit-learn's RidgeCV, CPU.

Same synthetic data for every variant (float32, planted linear, ``--train`` training
rows x ``--voxels`` voxels -> ``--targets`` targets, plus ``--test`` held-out rows),
same alpha grid (``--alphas``, log-spaced), same 5-fold unshuffled KFold:

* ``himalaya``: :func:`brainldm.ridge.fit_predict`, the decoder's code (himalaya's
  numpy backend, one alpha per target, targets in batches of the pipeline's default
  ``n_targets_batch`` 4096). It gives himalaya ``RidgeCV``'s results (tested) but
  diagonalises each fold once for all target batches;
* ``himalaya_ridgecv``: himalaya's own ``RidgeCV(fit_intercept=True)`` in one call,
  ``solver_params`` ``local_alpha=True, n_targets_batch=4096`` (its other defaults), on
  the same standardised X: a reference for ``fit_predict``;
* ``sklearn``: ``sklearn.linear_model.RidgeCV(alphas, cv=5)`` on the same
  standardised X. With ``cv=5`` scikit-learn cannot choose an alpha per target
  (``alpha_per_target`` needs its default leave-one-out CV): it picks one alpha for
  all targets (mean R^2 over targets), a weaker model. Held-out test correlations of
  every variant are reported so the comparison stays fair.
* ``data_only``: imports the same libraries, loads the data and standardises X, fits
  nothing (the memory floor).

Each run is its own process (data read from ``.npy`` files written once); wall time
of the process, time of the fit inside it, and peak RSS (``ru_maxrss`` of the child,
read through an intermediate process as ``bench/ingestion_streaming.py`` does).
Medians of ``--repeats`` runs; variants alternate within each repeat.
Targets get log-uniform signal-to-noise ratios (0.02-2), so their best alphas differ.
Results: ``bench/results/decoding_ridge.{json,md}``.

    .venv/bin/python bench/decoding_ridge.py [--train 5000 --voxels 2000 --targets 6400] [--repeats 3]
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

VARIANTS = ("himalaya", "himalaya_ridgecv", "sklearn", "data_only")
PIPELINE_TARGETS_BATCH = 4096  # config schema default of decoding.n_targets_batch


def make_data(folder: Path, n_train: int, n_test: int, n_voxels: int, n_targets: int, seed: int = 0) -> dict:
    """Planted linear data: Y = X W + noise, per-target SNR log-uniform in [0.02, 2]; written as .npy."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    # Voxels share a few latent sources (correlated like neighbouring voxels), plus their own noise.
    sources = rng.standard_normal((n, 64), dtype=np.float32)
    mixing = rng.standard_normal((64, n_voxels), dtype=np.float32) / 8
    x = sources @ mixing
    x += rng.standard_normal((n, n_voxels), dtype=np.float32)
    w = rng.standard_normal((n_voxels, n_targets), dtype=np.float32)
    y = x @ w
    signal_sd = y[:n_train].std(0)
    snr = 10 ** rng.uniform(np.log10(0.02), np.log10(2), n_targets)
    noise_sd = (signal_sd / np.sqrt(snr)).astype(np.float32)
    for start in range(0, n_targets, 512):  # in place, column blocks: no second copy of Y
        block = slice(start, start + 512)
        y[:, block] += rng.standard_normal((n, y[:, block].shape[1]), dtype=np.float32) * noise_sd[block]
        y[:, block] += rng.normal(0, 5, y[:, block].shape[1]).astype(np.float32)  # non-zero means
    y_test_clean = (x[n_train:] @ w)
    np.save(folder / "x_train.npy", x[:n_train])
    np.save(folder / "x_test.npy", x[n_train:])
    np.save(folder / "y_train.npy", y[:n_train])
    np.save(folder / "y_test.npy", y[n_train:])
    np.save(folder / "y_test_clean.npy", y_test_clean)
    np.save(folder / "snr.npy", snr)
    return {"train": n_train, "test": n_test, "voxels": n_voxels, "targets": n_targets,
            "snr_range": [0.02, 2.0], "latent_sources": 64}


def child(variant: str, folder: Path, alphas: list[float], cv: int, out: Path) -> None:
    """One fit in this process; writes fit time, test correlations and chosen alphas to ``out``."""
    import himalaya.ridge  # noqa: F401  (every variant imports the same libraries before the clock starts)
    from sklearn.linear_model import RidgeCV

    from brainldm.ridge import Standardizer, columnwise_correlation, fit_predict

    x_train, x_test = np.load(folder / "x_train.npy"), np.load(folder / "x_test.npy")
    y_train = np.load(folder / "y_train.npy")
    t0, c0 = time.perf_counter(), time.process_time()
    result: dict = {"variant": variant}
    if variant == "data_only":
        scaler = Standardizer.fit(x_train)
        scaler.transform(x_train), scaler.transform(x_test)
        predictions = None
    elif variant == "himalaya":
        fit = fit_predict(x_train, y_train, x_test, alphas, cv=cv, backend="numpy",
                          n_targets_batch=PIPELINE_TARGETS_BATCH)
        predictions = fit.predictions
        result["n_targets_batch"] = PIPELINE_TARGETS_BATCH
        result["alphas_chosen"] = {f"{a:g}": int(np.isclose(fit.best_alphas, a).sum()) for a in alphas}
        result["alpha_at_edge_fraction"] = float(fit.alpha_at_edge.mean())
    elif variant == "himalaya_ridgecv":
        from himalaya.backend import set_backend
        from himalaya.ridge import RidgeCV as HimalayaRidgeCV

        set_backend("numpy")
        scaler = Standardizer.fit(x_train)
        xt, xs = scaler.transform(x_train), scaler.transform(x_test)
        model = HimalayaRidgeCV(alphas=np.asarray(alphas), cv=cv, fit_intercept=True, solver_params={
            "local_alpha": True, "n_targets_batch": PIPELINE_TARGETS_BATCH, "warn": False}).fit(xt, y_train)
        predictions = np.asarray(model.predict(xs), dtype=np.float32)
        result["n_targets_batch"] = PIPELINE_TARGETS_BATCH
        result["alphas_chosen"] = {f"{a:g}": int(np.isclose(model.best_alphas_, a, rtol=1e-5).sum()) for a in alphas}
    elif variant == "sklearn":
        scaler = Standardizer.fit(x_train)  # the same standardisation as fit_predict
        xt, xs = scaler.transform(x_train), scaler.transform(x_test)
        model = RidgeCV(alphas=alphas, cv=cv, fit_intercept=True).fit(xt, y_train)
        predictions = model.predict(xs).astype(np.float32, copy=False)
        result["alpha_chosen"] = float(model.alpha_)
        result["predictions_dtype"] = str(model.predict(xs[:1]).dtype)
    else:
        raise ValueError(variant)
    result["fit_s"] = time.perf_counter() - t0
    result["fit_cpu_s"] = time.process_time() - c0
    if predictions is not None:
        y_test, clean = np.load(folder / "y_test.npy"), np.load(folder / "y_test_clean.npy")
        r = columnwise_correlation(predictions, y_test, axis=0)
        r_clean = columnwise_correlation(predictions, clean, axis=0)
        r_image = columnwise_correlation(predictions, y_test, axis=1)
        snr = np.load(folder / "snr.npy")
        low, high = snr < np.quantile(snr, 0.25), snr > np.quantile(snr, 0.75)
        result.update({
            "test_r_median": float(np.median(r)), "test_r_mean": float(np.mean(r)),
            "test_r_low_snr_quartile": float(np.median(r[low])), "test_r_high_snr_quartile": float(np.median(r[high])),
            "test_r_noiseless_median": float(np.median(r_clean)),
            "test_r_per_image_median": float(np.median(r_image)),
        })
    out.write_text(json.dumps(result))


def run_once(variant: str, folder: Path, args, tag: str) -> dict:
    """A separate process per run; ru_maxrss of children is a running maximum, hence the intermediate."""
    out = folder / f"{variant}-{tag}.json"
    load = os.getloadavg()[0]
    command = [sys.executable, __file__, "--child", variant, str(folder), str(out),
               "--cv", str(args.cv), "--alphas", *map(str, args.alpha_grid)]
    wrapper = ("import resource,subprocess,sys,time;t=time.perf_counter();"
               f"subprocess.run({command!r},check=True);"
               "print(time.perf_counter()-t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024)")
    wall, rss = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True,
                               check=True).stdout.split()[-2:]
    result = json.loads(out.read_text())
    result.update({"wall_s": float(wall), "peak_rss_mb": float(rss), "load_1min": load})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=5000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--voxels", type=int, default=2000)
    parser.add_argument("--targets", type=int, default=6400)
    parser.add_argument("--n-alphas", type=int, default=10, help="alphas log-spaced over 10^1..10^7")
    parser.add_argument("--cv", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--alphas", type=float, nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        variant, folder, out = args.child
        child(variant, Path(folder), args.alphas, args.cv, Path(out))
        return

    args.alpha_grid = [float(a) for a in np.logspace(1, 7, args.n_alphas)]
    import sklearn
    import himalaya

    machine = describe()
    results = {"machine": machine, "numpy": np.__version__, "sklearn": sklearn.__version__,
               "himalaya": himalaya.__version__, "alphas": args.alpha_grid, "cv": args.cv,
               "repeats": args.repeats, "load_average_start": os.getloadavg(), "runs": {v: [] for v in args.variants}}
    with tempfile.TemporaryDirectory(prefix="bench_decoding_ridge_") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        results["data"] = make_data(folder, args.train, args.test, args.voxels, args.targets)
        results["data"]["bytes_mb"] = {p.stem: p.stat().st_size / 2**20 for p in folder.glob("*.npy")}
        print(f"data written in {time.perf_counter() - t0:.1f} s: {results['data']}", flush=True)
        for repeat in range(args.repeats):
            for variant in args.variants:
                run = run_once(variant, folder, args, str(repeat))
                results["runs"][variant].append(run)
                print(f"{variant} run {repeat + 1} (load {run['load_1min']:.1f}): {run['wall_s']:.1f} s wall "
                      f"({run['fit_s']:.1f} s fit, {run['fit_cpu_s']:.1f} s CPU), "
                      f"peak RSS {run['peak_rss_mb']:.0f} MB, test r median {run.get('test_r_median', float('nan')):.3f}",
                      flush=True)
    results["load_average_end"] = os.getloadavg()

    summary = {}
    for variant, runs in results["runs"].items():
        s = summary[variant] = {key: statistics.median(r[key] for r in runs)
                                for key in ("wall_s", "fit_s", "fit_cpu_s", "peak_rss_mb")}
        for key in runs[0]:
            if key.startswith("test_r") or key in ("alpha_chosen", "alphas_chosen", "alpha_at_edge_fraction",
                                                   "n_targets_batch"):
                s[key] = runs[0][key]  # deterministic: identical in every run
    results["summary"] = summary
    ratios = {}
    if "sklearn" in summary:
        for variant in ("himalaya", "himalaya_ridgecv"):
            if variant in summary:
                ratios[variant] = {
                    "time_sklearn_over_himalaya": summary["sklearn"]["fit_s"] / summary[variant]["fit_s"],
                    "wall_sklearn_over_himalaya": summary["sklearn"]["wall_s"] / summary[variant]["wall_s"],
                    "cpu_sklearn_over_himalaya": summary["sklearn"]["fit_cpu_s"] / summary[variant]["fit_cpu_s"],
                    "peak_rss_himalaya_over_sklearn": summary[variant]["peak_rss_mb"] / summary["sklearn"]["peak_rss_mb"],
                }
                if "data_only" in summary:
                    floor = summary["data_only"]["peak_rss_mb"]
                    ratios[variant]["rss_above_data_himalaya_over_sklearn"] = (
                        (summary[variant]["peak_rss_mb"] - floor) / (summary["sklearn"]["peak_rss_mb"] - floor))
    results["ratios"] = ratios

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decoding_ridge.json").write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results, args)


def write_markdown(results: dict, args) -> None:
    m, d, s, ratios = results["machine"], results["data"], results["summary"], results["ratios"]
    command = "`.venv/bin/python bench/decoding_ridge.py"
    for flag, default in (("train", 5000), ("test", 1000), ("voxels", 2000), ("targets", 6400), ("repeats", 3)):
        if getattr(args, flag) != default:
            command += f" --{flag} {getattr(args, flag)}"
    command += "`"
    alphas = ", ".join(f"{a:.3g}" for a in results["alphas"])
    cv, n, p, n_test = results["cv"], d["train"], d["voxels"], d["test"]
    mb = 4 / 2**20  # float32
    batch = min(PIPELINE_TARGETS_BATCH, d["targets"])
    decompositions = ((cv + 1) * p * p + (n + n_test) * p) * mb
    loads = [r["load_1min"] for runs in results["runs"].values() for r in runs if "load_1min" in r]
    lines = [
        "# Decoder ridge: `fit_predict` (himalaya backend, alpha per target) vs scikit-learn RidgeCV (CPU)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores (shared with other jobs), GPU: {m['gpu'] or 'none'}, Python "
        f"{m['python']}, numpy {results['numpy']}, himalaya {results['himalaya']} (numpy backend), scikit-learn "
        f"{results['sklearn']}.",
        f"Command: {command}",
        "",
        f"Data: float32, {n:,} training rows x {p:,} voxels -> {d['targets']:,} targets, "
        f"{n_test:,} held-out test rows; planted linear (voxels mix {d['latent_sources']} shared sources plus "
        f"their own noise; Y = X W + noise, per-target SNR log-uniform in {d['snr_range'][0]}-{d['snr_range'][1]}, "
        "non-zero target means). "
        f"Alpha grid ({len(results['alphas'])} values, the same for all): {alphas}. {cv}-fold unshuffled KFold. "
        "X standardised with the training rows' statistics, intercept fitted, in every variant.",
        f"Each run is its own process (wall time of the process including imports and loading the .npy files; fit "
        f"time measured inside it; peak RSS of the process). Medians of {results['repeats']} runs, variants "
        "alternating. Load average (1 min) at start / end: "
        f"{results['load_average_start'][0]:.2f} / {results['load_average_end'][0]:.2f}"
        + (f"; at the start of the runs: {min(loads):.1f}-{max(loads):.1f} on {m['cores']} cores, so the "
           "fit times are wall times on a shared machine (the CPU seconds are given too)." if loads else "."),
        "",
        "| variant | alpha | median fit s | runs, fit s | median wall s | median fit CPU s | peak RSS MB | "
        "test r (median over targets) | r, lowest-SNR quartile | r, highest-SNR quartile | "
        "r vs noiseless test targets | r per test image |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    labels = {"himalaya": f"`fit_predict` (decoder), targets in batches of {PIPELINE_TARGETS_BATCH}",
              "himalaya_ridgecv": f"himalaya `RidgeCV`, one call, solver `n_targets_batch={PIPELINE_TARGETS_BATCH}`",
              "sklearn": "scikit-learn `RidgeCV(cv=5)`", "data_only": "data only (imports, load, standardise)"}
    for variant, row in s.items():
        if "alphas_chosen" in row:
            used = {a: k for a, k in row["alphas_chosen"].items() if k}
            alpha = f"per target ({len(used)} distinct values used)"
        elif "alpha_chosen" in row:
            alpha = f"one for all: {row['alpha_chosen']:.3g}"
        else:
            alpha = ""
        r = [f"{row[k]:.3f}" if k in row else "" for k in
             ("test_r_median", "test_r_low_snr_quartile", "test_r_high_snr_quartile", "test_r_noiseless_median",
              "test_r_per_image_median")]
        runs = ", ".join(f"{r['fit_s']:.1f}" for r in results["runs"][variant])
        lines.append(f"| {labels[variant]} | {alpha} | {row['fit_s']:.1f} | {runs} | {row['wall_s']:.1f} | "
                     f"{row['fit_cpu_s']:.1f} | {row['peak_rss_mb']:.0f} | " + " | ".join(r) + " |")
    lines.append("")
    for variant, ratio in ratios.items():
        line = (f"**{labels[variant]}: scikit-learn time / its time = "
                f"{ratio['time_sklearn_over_himalaya']:.2f}** (fit; {ratio['wall_sklearn_over_himalaya']:.2f} in "
                f"process wall time, {ratio['cpu_sklearn_over_himalaya']:.2f} in fit CPU time; > 1 means faster than "
                f"scikit-learn); peak RSS it / scikit-learn = **{ratio['peak_rss_himalaya_over_sklearn']:.2f}**")
        if "rss_above_data_himalaya_over_sklearn" in ratio:
            line += (f" ({ratio['rss_above_data_himalaya_over_sklearn']:.2f} counting only the memory above the "
                     "data-only floor)")
        lines.append(line + ".")
        lines.append("")
    if "himalaya" in s and "alphas_chosen" in s["himalaya"]:
        counts = ", ".join(f"{a}: {k}" for a, k in s["himalaya"]["alphas_chosen"].items())
        lines += [f"Alphas chosen by `fit_predict` (targets per alpha): {counts}; "
                  f"{100 * s['himalaya']['alpha_at_edge_fraction']:.1f}% at the grid's edge."]
        if "himalaya_ridgecv" in s:
            same = s["himalaya_ridgecv"]["alphas_chosen"] == s["himalaya"]["alphas_chosen"]
            lines.append(f"himalaya `RidgeCV` chose {'the same counts' if same else 'different counts: '}"
                         + ("" if same else ", ".join(f"{a}: {k}" for a, k in
                                                      s["himalaya_ridgecv"]["alphas_chosen"].items())) + ".")
        lines.append("")
    lines += [
        "## Reading",
        "",
        "* scikit-learn's `RidgeCV` with `cv=5` runs a grid search (`GridSearchCV` over `Ridge`) and picks **one "
        "alpha for all targets** (best mean R^2); `alpha_per_target=True` is only allowed with its default "
        "leave-one-out (efficient LOO/GCV) CV, which is not the K-fold CV the decoder uses. The scikit-learn model is "
        "therefore weaker where targets' SNRs differ; the test correlations above compare the quality of both. "
        "It refits `Ridge` (Cholesky on X'X) once per fold and alpha, then once more on all rows.",
        "* `fit_predict` gives himalaya `RidgeCV`'s results (same folds, score, alpha per target, intercept; "
        "`tests/test_ridge.py` compares them) but organises the work for many targets: the Gram matrix of every "
        f"fold's training rows and of all rows is eigendecomposed once ({cv + 1} eigendecompositions of "
        f"{p:,} x {p:,}, float64, from block Gram matrices: no copy of X per fold), before any target is read; "
        f"then each batch of targets is read once and costs, per fold and alpha, one product of the fold's "
        f"rotated validation rows ({n // cv:,} x {p:,}) with the batch's rotated X'Y ({p:,} x batch). Memory: "
        f"the decompositions ({cv + 1} matrices {p:,} x {p:,} and the rotated rows, {decompositions:.0f} MB here, "
        "independent of the number of targets) plus a few arrays of voxels x batch and validation rows x batch "
        f"({batch:,} targets: about {(3 * p + 3 * (n // cv)) * batch * mb:.0f} MB); the targets of a batch are "
        "used where they lie (an in-memory array is not copied; the pipeline reads them from HDF5 one batch at a "
        "time).",
        "* himalaya's `RidgeCV` diagonalises each fold by an SVD of the fold's rows, then for each fold builds "
        f"the prediction matrices of all alphas at once ({len(results['alphas'])} x {p:,} x {n - n // cv:,}, "
        f"float32: {len(results['alphas']) * p * (n - n // cv) * mb:.0f} MB, and their product with the validation "
        "rows) and multiplies them with the targets of the fold's training rows: per fold, alpha and target "
        f"{n - n // cv:,} x {n // cv:,} multiply-adds against `fit_predict`'s {p:,} x {n // cv:,} "
        f"({(n - n // cv) / p:.1f} times as many here), plus the per-alpha matrices.",
        "* The eigendecompositions run on one BLAS thread: LAPACK's tridiagonal reduction is matrix-vector work "
        "that OpenBLAS's second thread barely speeds up and that collapses when the cores are shared (measured "
        "apart from this script on the same machine under load: 2,000 x 2,000, float64, 14 s on two threads, "
        "2.4 s on one). Everything else uses both cores.",
    ]
    if loads and max(loads) > 1.5 * m["cores"]:
        lines.append(
            f"* Load: other jobs kept {min(loads):.0f}-{max(loads):.0f} runnable processes on the {m['cores']} cores "
            "throughout, so every wall time above is stretched several-fold against an idle machine and the "
            "variants' ratios carry that noise; the CPU-second ratio depends less on it (although busy-waiting "
            "BLAS threads also inflate CPU seconds under load). Peak RSS does not depend on the load.")
    lines.append("")
    (args.out / "decoding_ridge.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
