"""Benchmark: decoding ridge (himalaya ``torch_cuda``) and img2img reconstruction (SD 1.4, fp16) on a GPU.

Part 1, ridge: the decoder's own function, :func:`brainldm.ridge.fit_predict` (himalaya
RidgeCV's results: an alpha per target by 5-fold CV over 10 alphas; each fold
eigendecomposed once, in float64, for all target batches; targets in batches of
``--n-targets-batch``, the pipeline's default 4096), on the ``torch_cuda`` backend with
data in host memory as the pipeline holds it. Planted linear data, float32:
``--train`` training trials (NSD subj01: 24,980) x voxels -> ``--targets`` targets
(PCA components, paper: 6,400), 982 test images.

* ``cpu_bench_size``: 5,000 x 2,000 -> 6,400, the size of ``bench/decoding_ridge.py``
  (whose CPU numbers came from another machine);
* two calibration sizes (``--calibration-voxels``, early-visual-cortex-like ROIs) on
  the full number of trials: they also warm up cuSOLVER; their times, fitted as
  ``t = a v^p``, predict the largest voxel count <= ``--voxels`` (nsdgeneral-like,
  default 15,000) whose ``--ridge-repeats`` runs fit in ``--ridge-budget-s``;
* ``large``: that size, median of the runs that fit (the results say how many).

Part 2, img2img: the ``sd14`` preset (SD 1.4's exact architecture, random weights,
built on the CPU in this run) in float16 on CUDA, through
:meth:`brainldm.ldm.reconstruct.Reconstructor.image_to_image` (Xzc: 512 px images,
50 DDIM steps at strength 0.8 = 40 denoising steps, guidance 5, eta 0, decoded
images out), for batch sizes ``--batch-sizes`` (default 1 2 4 8 16): one short warm-up
call per size (5 steps), then ``--repeats`` timed calls; images/s from the median,
``torch.cuda.max_memory_allocated`` per size. The baseline is batch size 1 in the
same run. Sizes whose predicted time would pass ``--budget-s`` are skipped.

Sized to finish in under ~5 minutes on one H100. Results:
``bench/results/decoding_device.{json,md}``.

    .venv/bin/python bench/decoding_device.py [--voxels 15000] [--batch-sizes 1 2 4 8 16] [--out DIR]

Needs numpy, torch with CUDA, himalaya, diffusers, transformers, tokenizers, h5py and
Pillow importable (``src/`` is put on the path by the script). On a lent machine whose
files come back from ``$OUT``: ``python bench/decoding_device.py --out "$OUT"``.

Without CUDA the script says so and exits (status 0) without measuring or writing
anything. ``--check-on-cpu`` runs the same code paths on the CPU (himalaya ``torch``
backend, ``tiny`` preset, toy sizes) and writes to a temporary folder: a smoke test
of the script, not a benchmark.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from machine import describe  # noqa: E402

GIB = 2**30
ALPHAS = [float(a) for a in np.logspace(1, 7, 10)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / GIB if device.type == "cuda" else None


# ---------------------------------------------------------------------------- ridge


def make_ridge_data(n_train: int, n_test: int, n_voxels: int, n_targets: int, device: torch.device, seed: int = 0):
    """Planted linear data (float32, host memory), generated on ``device``.

    Targets depend on the first 1,000 voxels (so every voxel count >= 1,000 holds the
    signal) with per-target SNR log-uniform in 0.02-2; X has 64 shared sources.
    """
    g = torch.Generator(device).manual_seed(seed)
    n = n_train + n_test
    informative = min(1000, n_voxels)
    sources = torch.randn(n, 64, generator=g, device=device)
    x = sources @ (torch.randn(64, n_voxels, generator=g, device=device) / 8)
    x += torch.randn(n, n_voxels, generator=g, device=device)
    w = torch.randn(informative, n_targets, generator=g, device=device) / math.sqrt(informative)
    y = x[:, :informative] @ w
    snr = 10 ** (torch.rand(n_targets, generator=g, device=device) * 2 + math.log10(0.02))
    y += torch.randn(n, n_targets, generator=g, device=device) * (y[:n_train].std(0) / snr.sqrt())
    x, y = x.cpu().numpy(), y.cpu().numpy()
    del sources, w, snr
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def ridge_runs(data, n_voxels: int, backend: str, batch: int, repeats: int, deadline: float,
               device: torch.device) -> dict:
    from brainldm.ridge import fit_predict
    from brainldm.stats import columnwise_correlation

    x_train, y_train, x_test, y_test = data
    x_train, x_test = x_train[:, :n_voxels], x_test[:, :n_voxels]
    times, peaks, fit = [], [], None
    for k in range(repeats):
        if k and time.perf_counter() > deadline:
            break
        reset_peak(device)
        sync(device)
        t0 = time.perf_counter()
        fit = fit_predict(x_train, y_train, x_test, ALPHAS, cv=5, backend=backend, n_targets_batch=batch)
        sync(device)
        times.append(time.perf_counter() - t0)
        peaks.append(peak_gib(device))
    r = columnwise_correlation(fit.predictions, y_test, axis=0)
    return {"train": len(x_train), "voxels": n_voxels, "targets": y_train.shape[1], "test": len(x_test),
            "n_targets_batch": batch, "target_batches": -(-y_train.shape[1] // batch), "runs_s": times,
            "median_s": statistics.median(times), "targets_per_s": y_train.shape[1] / statistics.median(times),
            "gpu_peak_gib": None if peaks[0] is None else max(peaks), "test_r_median": float(np.median(r)),
            "alpha_at_edge_fraction": float(fit.alpha_at_edge.mean()),
            "distinct_alphas": int(len(np.unique(fit.best_alphas)))}


def ridge_part(args, device: torch.device, backend: str, budget_end: float) -> dict:
    out: dict = {"backend": backend, "alphas": ALPHAS, "cv": 5}
    # cuSOLVER/cuBLAS handles and the CUDA context: a throw-away fit.
    small = make_ridge_data(500, 50, 100, 64, device)
    ridge_runs(small, 100, backend, 64, 1, 0, device)

    if args.cpu_bench_size:
        t0 = time.perf_counter()
        data = make_ridge_data(5000, 1000, 2000, args.targets, device)
        out["cpu_bench_size"] = ridge_runs(data, 2000, backend, args.n_targets_batch, 3, budget_end, device)
        del data
        print(f"ridge at the CPU benchmark's size: {out['cpu_bench_size']['median_s']:.2f} s "
              f"({time.perf_counter() - t0:.1f} s with data)", flush=True)

    t0 = time.perf_counter()
    data = make_ridge_data(args.train, args.test, args.voxels, args.targets, device)
    out["data_s"] = time.perf_counter() - t0
    print(f"ridge data {args.train} x {args.voxels} -> {args.targets} made in {out['data_s']:.1f} s", flush=True)
    calib = out["calibration"] = []
    for v in args.calibration_voxels:
        calib.append(ridge_runs(data, v, backend, args.n_targets_batch, 1, 0, device))
        print(f"ridge calibration {args.train} x {v}: {calib[-1]['median_s']:.2f} s, "
              f"peak {calib[-1]['gpu_peak_gib']} GiB", flush=True)
    (v1, t1), (v2, t2) = [(c["voxels"], c["median_s"]) for c in calib[:2]]
    p = min(max(math.log(t2 / t1) / math.log(v2 / v1), 1.0), 3.0)
    budget = min(args.ridge_budget_s, budget_end - time.perf_counter() - args.reserve_s)
    per_run = budget / args.ridge_repeats
    fits = int(v2 * (per_run / t2) ** (1 / p)) // 500 * 500
    chosen = max(min(args.voxels, fits), v2)
    out["scaling"] = {"exponent": p, "per_run_budget_s": per_run, "voxels_fitting": fits, "chosen_voxels": chosen,
                      "predicted_s": t2 * (chosen / v2) ** p}
    print(f"ridge: time ~ voxels^{p:.2f}; {chosen} voxels predicted {out['scaling']['predicted_s']:.0f} s per run",
          flush=True)
    if chosen > v2:
        try:
            out["large"] = ridge_runs(data, chosen, backend, args.n_targets_batch, args.ridge_repeats,
                                      time.perf_counter() + budget - out["scaling"]["predicted_s"], device)
            print(f"ridge large {args.train} x {chosen}: runs {out['large']['runs_s']}, "
                  f"peak {out['large']['gpu_peak_gib']} GiB", flush=True)
        except torch.cuda.OutOfMemoryError as exc:
            out["large"] = {"voxels": chosen, "error": f"out of memory: {exc}".splitlines()[0]}
    del data
    reset_peak(device)
    return out


# ---------------------------------------------------------------------------- img2img


def img2img_part(args, device_name: str, preset: str, settings: dict, image_size: int, budget_end: float) -> dict:
    from PIL import Image

    from brainldm.ldm.load import load_model
    from brainldm.ldm.reconstruct import Reconstructor, _generators
    from brainldm.synthetic.scenes import make_stimulus
    from brainldm.synthetic.tiny_sd import build_pipeline

    n = max(args.batch_sizes)
    stimuli = [make_stimulus(0, i, image_size, 5) for i in range(n)]
    images = [Image.fromarray(s[1]) for s in stimuli]
    captions = [s[2] for s in stimuli]
    t0 = time.perf_counter()
    pipe = load_model(build_pipeline(preset, [c for group in captions for c in group], seed=0), device_name)
    out: dict = {"model": f"{preset} preset, random weights, built in this run", "settings": settings,
                 "model_build_s": time.perf_counter() - t0, "sweep": {}}
    device = pipe.device
    out["device"], out["dtype"] = str(device), str(pipe.unet.dtype)
    out["unet_parameters"] = sum(p.numel() for p in pipe.unet.parameters())
    out["weights_gib"] = torch.cuda.memory_allocated(device) / GIB if device.type == "cuda" else None
    print(f"{preset} ready in {out['model_build_s']:.1f} s on {device} ({pipe.unet.dtype})", flush=True)
    tokens = pipe.tokenizer([g[0] for g in captions], padding="max_length",
                            max_length=pipe.tokenizer.model_max_length, truncation=True, return_tensors="pt")
    with torch.no_grad():
        c = pipe.text_encoder(tokens.input_ids.to(device)).last_hidden_state
    recon = Reconstructor(pipe, settings)
    warm = {**settings, "num_inference_steps": 5}
    per_image = None
    for bs in args.batch_sizes:
        entry = out["sweep"][bs] = {}
        left = budget_end - time.perf_counter()
        if per_image is not None and per_image * bs * (args.repeats + 0.3) > left:
            entry["skipped"] = f"time budget ({left:.0f} s left, about {per_image * bs * args.repeats:.0f} s needed)"
            print(f"img2img batch {bs}: skipped ({entry['skipped']})", flush=True)
            continue
        ids = np.arange(bs)
        try:
            reset_peak(device)
            recon.settings = warm
            recon.image_to_image(images[:bs], c[:bs], _generators(0, "Xzc", "subj01", ids, np.zeros(bs)))
            recon.settings = settings
            times = []
            for _ in range(args.repeats):
                sync(device)
                t0 = time.perf_counter()
                _, latents = recon.image_to_image(images[:bs], c[:bs],
                                                  _generators(0, "Xzc", "subj01", ids, np.zeros(bs)))
                sync(device)
                times.append(time.perf_counter() - t0)
        except torch.cuda.OutOfMemoryError as exc:
            recon.settings = settings
            entry["error"] = f"out of memory: {exc}".splitlines()[0]
            continue
        entry.update({"batch_s": times, "median_batch_s": statistics.median(times),
                      "images_per_s": bs / statistics.median(times), "max_memory_allocated_gib": peak_gib(device),
                      "non_finite_latents": int((~torch.isfinite(latents)).sum())})
        per_image = entry["median_batch_s"] / bs
        print(f"img2img batch {bs}: {entry['median_batch_s']:.2f} s per call, {entry['images_per_s']:.2f} images/s"
              + (f", peak {entry['max_memory_allocated_gib']:.1f} GiB" if entry["max_memory_allocated_gib"] else ""),
              flush=True)
    base = out["sweep"].get(args.batch_sizes[0], {}).get("images_per_s")
    for entry in out["sweep"].values():
        if base and "images_per_s" in entry:
            entry["ratio_vs_first"] = entry["images_per_s"] / base
    del pipe, recon, c
    return out


# ---------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=24980, help="training trials (NSD subj01: 24,980)")
    parser.add_argument("--test", type=int, default=982)
    parser.add_argument("--voxels", type=int, default=15000, help="largest voxel count to try (nsdgeneral ~15k)")
    parser.add_argument("--calibration-voxels", type=int, nargs=2, default=[2000, 4000])
    parser.add_argument("--targets", type=int, default=6400)
    parser.add_argument("--n-targets-batch", type=int, default=4096, help="decoding.n_targets_batch (default 4096)")
    parser.add_argument("--ridge-repeats", type=int, default=3)
    parser.add_argument("--ridge-budget-s", type=float, default=110.0, help="time for the large ridge runs")
    parser.add_argument("--no-cpu-bench-size", dest="cpu_bench_size", action="store_false")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=270.0, help="skip what would end past this")
    parser.add_argument("--reserve-s", type=float, default=110.0, help="kept for img2img when sizing the ridge")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--check-on-cpu", action="store_true",
                        help="smoke-test this script on the CPU (torch backend, tiny preset, toy sizes, temporary output)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    started = time.perf_counter()

    if args.check_on_cpu:
        device, backend, preset, image_size = torch.device("cpu"), "torch", "tiny", 64
        settings = {"device": "cpu", "output_size": 64, "num_inference_steps": 10, "strength": 0.8,
                    "guidance_scale": 5.0, "eta": 0.0, "n_samples": 1, "seed": 0}
        args.train, args.test, args.voxels, args.targets = 600, 50, 800, 256
        args.calibration_voxels, args.n_targets_batch, args.cpu_bench_size = [200, 400], 128, False
        args.batch_sizes, args.repeats, args.ridge_repeats = [1, 2], 1, 2
        args.out = Path(tempfile.mkdtemp(prefix="decoding_device_check_"))
    else:
        if not torch.cuda.is_available():
            print(f"decoding_device.py: CUDA is not available here (torch {torch.__version__}, CUDA build "
                  f"{torch.version.cuda or 'none'}); this benchmark needs an NVIDIA GPU. Nothing was measured "
                  "or written. (--check-on-cpu smoke-tests the script on the CPU.)", file=sys.stderr)
            return 0
        device, backend, preset, image_size = torch.device("cuda"), "torch_cuda", "sd14", 512
        settings = {"device": "cuda", "output_size": 512, "num_inference_steps": 50, "strength": 0.8,
                    "guidance_scale": 5.0, "eta": 0.0, "n_samples": 1, "seed": 0}
        torch.set_num_threads(os.cpu_count() or 1)  # building SD 1.4's random weights happens on the CPU
    budget_end = started + args.budget_s

    import himalaya

    results = {"machine": describe(), "torch_cuda": torch.version.cuda, "himalaya": himalaya.__version__}
    results["ridge"] = ridge_part(args, device, backend, budget_end)
    results["img2img"] = img2img_part(args, str(device), preset, settings, image_size, budget_end)
    results["total_s"] = time.perf_counter() - started

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decoding_device.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    write_markdown(results, args, device)
    print(f"results written to {args.out}")
    return 0


def write_markdown(results: dict, args, device: torch.device) -> None:
    m, ridge, img = results["machine"], results["ridge"], results["img2img"]
    gpu = device.type == "cuda"

    def gib(value) -> str:
        return "" if value is None else f"{value:.1f}"

    lines = [
        f"# Decoding ridge and img2img on {'a GPU' if gpu else 'the CPU (script check only)'}",
        "",
        f"Machine: {m['gpu'] or 'no GPU'}; CPU {m['cpu']}, {m['cores']} cores; torch {m.get('torch')} "
        f"(CUDA {results['torch_cuda']}), himalaya {results['himalaya']}, Python {m['python']}.",
        "Command: `.venv/bin/python bench/decoding_device.py" + (" --check-on-cpu" if not gpu else "")
        + f"`. Total time of the script: {results['total_s']:.0f} s.",
        "",
        f"## Ridge (`fit_predict`, himalaya `{ridge['backend']}`, alpha per target, 5-fold CV, "
        f"{len(ridge['alphas'])} alphas 10-10^7)",
        "",
        "| run | trials x voxels -> targets | target batches | runs, s | median s | targets/s | peak GPU GiB | "
        "test r (median) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = []
    if "cpu_bench_size" in ridge:
        rows.append(("size of bench/decoding_ridge.py", ridge["cpu_bench_size"]))
    rows += [(f"calibration {i + 1}", c) for i, c in enumerate(ridge["calibration"])]
    if "large" in ridge:
        rows.append(("large", ridge["large"]))
    for label, r in rows:
        if "error" in r:
            lines.append(f"| {label} | {r['voxels']} voxels | | {r['error']} | | | | |")
            continue
        lines.append(f"| {label} | {r['train']:,} x {r['voxels']:,} -> {r['targets']:,} | {r['target_batches']} of "
                     f"<= {r['n_targets_batch']} | {', '.join(f'{s:.1f}' for s in r['runs_s'])} | {r['median_s']:.1f} | "
                     f"{r['targets_per_s']:.0f} | {gib(r['gpu_peak_gib'])} | {r['test_r_median']:.3f} |")
    sc = ridge["scaling"]
    lines += [
        "",
        f"Time grows as voxels^{sc['exponent']:.2f} between the calibration sizes; the large size is the most "
        f"voxels (<= {args.voxels:,}) whose predicted time ({sc['predicted_s']:.0f} s) fits {sc['per_run_budget_s']:.0f} "
        f"s per run. Data made on the device, held in host memory as the pipeline holds it "
        f"({ridge['data_s']:.0f} s). `fit_predict` eigendecomposes the Gram matrix of each fold's training rows "
        "and of all rows once (float64, on the device), then fits every target batch against them.",
        "",
        f"## img2img (Xzc, `Reconstructor.image_to_image`), {img['model']}",
        "",
        f"{img['dtype']} on {img['device']}; U-Net {img['unet_parameters'] / 1e6:.0f} M parameters; weights on "
        f"the GPU {gib(img['weights_gib']) or '-'} GiB; built and moved in {img['model_build_s']:.0f} s. Settings "
        f"{json.dumps(img['settings'])} ({int(img['settings']['num_inference_steps'] * img['settings']['strength'])} "
        f"denoising steps, classifier-free guidance: U-Net batch = 2 x batch size). Median of {args.repeats} calls "
        "after a 5-step warm-up call per size.",
        "",
        f"| batch size | median s / call | images/s | ratio vs batch {args.batch_sizes[0]} | peak GPU GiB | "
        "non-finite latents |",
        "|---|---|---|---|---|---|",
    ]
    for bs, e in img["sweep"].items():
        if "images_per_s" not in e:
            lines.append(f"| {bs} | {e.get('error') or e.get('skipped')} | | | | |")
            continue
        lines.append(f"| {bs} | {e['median_batch_s']:.2f} | {e['images_per_s']:.2f} | "
                     f"{e.get('ratio_vs_first', float('nan')):.2f}x | {gib(e['max_memory_allocated_gib'])} | "
                     f"{e['non_finite_latents']} |")
    lines.append("")
    (args.out / "decoding_device.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
