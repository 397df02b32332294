"""Benchmark: feature extraction on a GPU, batch-size sweep, SD 1.4's architecture in float16.

The model is ``--model`` (a diffusers folder, e.g. a download of
CompVis/stable-diffusion-v1-4) or, by default, the ``sd14`` preset built on
the fly (SD 1.4's exact architecture with random weights: the real cost, no
download). Features are the paper's defaults (``image_size`` 320, 50 DDIM
steps, strength 0.8 = 40 denoising steps, guidance 5, stages 0.2/0.66/1, five
U-Net blocks) on synthetic 425 px images (NSD's size) with 5 captions each.

For each batch size (default 1, 2, 4, 8, 16): one warm-up batch, then
``--repeats`` timed batches of :meth:`FeatureExtractor.process_batch` (all
features of the batch, copied to the CPU); images/s from the median, and
``torch.cuda.max_memory_allocated`` over those batches. The baseline is batch
size 1 in the same run. Then one end-to-end ``features_to_files`` run (shards,
HDF5 files) at ``--e2e-batch-size`` shows the cost of the file writing.
A time budget (``--budget-s``, default 240) skips what would not fit.
Results: ``bench/results/features_device.{json,md}``.

    .venv/bin/python bench/features_device.py [--model DIR] [--batch-sizes 1 2 4 8 16] [--repeats 3]

Without CUDA the script says so and exits (status 0) without measuring or
writing anything. ``--check-on-cpu`` runs the same code path on the CPU with
the tiny preset at toy sizes and writes to a temporary folder (a smoke test
of the script, not a benchmark).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from brainldm.config import section_settings  # noqa: E402
from brainldm.ldm.names import feature_names  # noqa: E402  (no torch/diffusers)
from brainldm.synthetic.scenes import make_stimulus  # noqa: E402
from machine import describe  # noqa: E402

GIB = 2**30


def extract_stimuli(path: Path, n: int, size: int) -> tuple[np.ndarray, list[list[str]]]:
    stimuli = [make_stimulus(0, i, size, 5) for i in range(n)]
    images, captions = np.stack([s[1] for s in stimuli]), [s[2] for s in stimuli]
    with h5py.File(path, "w") as h5:
        h5["images"] = images
        h5["nsd_ids"] = np.arange(n)
        h5.create_dataset("captions", data=np.array(captions, dtype=object).astype(h5py.string_dtype()))
        h5["n_captions"] = [len(c) for c in captions]
    return images, captions


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="diffusers folder to load (default: build the sd14 preset, random weights)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--e2e-batch-size", type=int, default=8)
    parser.add_argument("--e2e-images", type=int, default=32)
    parser.add_argument("--budget-s", type=float, default=240.0, help="skip the rest once this much time is spent")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--check-on-cpu", action="store_true",
                        help="smoke-test this script on the CPU (tiny preset, toy sizes, temporary output)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    started = time.perf_counter()

    if args.check_on_cpu:
        device_name, preset = "cpu", "tiny"
        config = section_settings("features", {"device": "cpu", "image_size": 64, "num_inference_steps": 10})
        args.batch_sizes, args.repeats, args.e2e_images = [1, 2], 1, 4
        args.e2e_batch_size = 2
        args.out = Path(tempfile.mkdtemp(prefix="features_device_check_"))
        brick = 80
    else:
        if not torch.cuda.is_available():
            print(f"features_device.py: CUDA is not available here (torch {torch.__version__}, CUDA build "
                  f"{torch.version.cuda or 'none'}); this benchmark needs an NVIDIA GPU. Nothing was measured "
                  "or written. (--check-on-cpu smoke-tests the script on the CPU.)", file=sys.stderr)
            return 0
        device_name, preset = "cuda", "sd14"
        config = section_settings("features", {"device": "cuda"})
        brick = 425
        torch.set_num_threads(os.cpu_count() or 1)  # for building the random weights on the CPU

    # diffusers/transformers take seconds to import: only once CUDA (or the check) is there.
    from brainldm.ldm.features import FeatureExtractor, features_to_files
    from brainldm.ldm.load import load_model
    from brainldm.synthetic.tiny_sd import build_pipeline

    n_images = max(args.batch_sizes)
    results = {"machine": describe(), "torch_cuda": torch.version.cuda, "features_config": config,
               "features": feature_names(config), "repeats": args.repeats, "sweep": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        images, captions = extract_stimuli(tmp / "stimuli.h5", n_images, brick)
        t0 = time.perf_counter()
        if args.model:
            pipe = load_model(args.model, device_name)
            results["model"] = str(args.model)
        else:
            pipe = load_model(build_pipeline(preset, [c for group in captions for c in group], seed=0), device_name)
            results["model"] = f"{preset} preset, random weights, built in this run"
        results["model_load_s"] = time.perf_counter() - t0
        device = pipe.device
        results["device"], results["dtype"] = str(device), str(pipe.unet.dtype)
        results["parameters"] = {k: sum(p.numel() for p in getattr(pipe, k).parameters())
                                 for k in ("unet", "vae", "text_encoder")}
        if device.type == "cuda":
            results["weights_gib"] = torch.cuda.memory_allocated(device) / GIB
        print(f"model ready in {results['model_load_s']:.1f} s on {device} ({pipe.unet.dtype})", flush=True)

        extractor = FeatureExtractor(pipe, config)
        ids = list(range(n_images))
        for bs in args.batch_sizes:
            if time.perf_counter() - started > args.budget_s:
                results["sweep"][bs] = {"skipped": "time budget"}
                continue
            entry = results["sweep"][bs] = {}
            try:
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(device)
                features, _ = extractor.process_batch(images[:bs], captions[:bs], ids[:bs])  # warm-up
                entry["non_finite_values"] = int(sum((~np.isfinite(a)).sum() for a in features.values()))
                times = []
                for _ in range(args.repeats):
                    sync(device)
                    t0 = time.perf_counter()
                    extractor.process_batch(images[:bs], captions[:bs], ids[:bs])
                    sync(device)
                    times.append(time.perf_counter() - t0)
            except torch.cuda.OutOfMemoryError as exc:
                entry["error"] = f"out of memory: {exc}".splitlines()[0]
                continue
            entry["batch_s"] = times
            entry["median_batch_s"] = statistics.median(times)
            entry["images_per_s"] = bs / entry["median_batch_s"]
            if device.type == "cuda":
                entry["max_memory_allocated_gib"] = torch.cuda.max_memory_allocated(device) / GIB
            print(f"batch {bs}: {entry['median_batch_s']:.2f} s per batch, {entry['images_per_s']:.2f} images/s"
                  + (f", peak {entry['max_memory_allocated_gib']:.1f} GiB" if "max_memory_allocated_gib" in entry
                     else ""), flush=True)

        base = results["sweep"].get(args.batch_sizes[0], {}).get("images_per_s")
        for bs, entry in results["sweep"].items():
            if base and "images_per_s" in entry:
                entry["ratio_vs_batch_%d" % args.batch_sizes[0]] = entry["images_per_s"] / base

        if time.perf_counter() - started < args.budget_s:
            cfg = {**config, "batch_size": args.e2e_batch_size, "shard_size": max(args.e2e_batch_size, 16)}
            out = tmp / "e2e"
            paths = {n: out / f"{n}.h5" for n in feature_names(cfg)}
            e2e_stimuli = tmp / "stimuli_e2e.h5"
            extract_stimuli(e2e_stimuli, args.e2e_images, brick)
            t0 = time.perf_counter()
            features_to_files(pipe, e2e_stimuli, paths, cfg, out / "shards")
            seconds = time.perf_counter() - t0
            size = sum(p.stat().st_size for p in paths.values())
            results["end_to_end"] = {"images": args.e2e_images, "batch_size": args.e2e_batch_size, "s": seconds,
                                     "images_per_s": args.e2e_images / seconds, "output_gib": size / GIB}
            print(f"end to end: {args.e2e_images} images in {seconds:.1f} s "
                  f"({args.e2e_images / seconds:.2f} images/s), {size / GIB:.2f} GiB of feature files", flush=True)
        else:
            results["end_to_end"] = {"skipped": "time budget"}
    results["total_s"] = time.perf_counter() - started

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "features_device.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    m = results["machine"]
    b0 = args.batch_sizes[0]
    lines = [
        f"# Feature extraction on {'a GPU' if device.type == 'cuda' else 'the CPU (script check only)'}: batch sizes",
        "",
        f"Machine: {m['gpu'] or 'no GPU'}; CPU {m['cpu']}, {m['cores']} cores; torch {m.get('torch')} "
        f"(CUDA {results['torch_cuda']}), Python {m['python']}.",
        f"Model: {results['model']} ({results['dtype']} on {results['device']}; U-Net "
        f"{results['parameters']['unet'] / 1e6:.0f} M parameters), ready in {results['model_load_s']:.0f} s.",
        f"Features: image_size {config['image_size']}, {config['num_inference_steps']} steps, strengths "
        f"{config['strengths']}, stages {config['stages']}, blocks {config['unet_blocks']} "
        f"({len(results['features'])} features).",
        f"Command: `.venv/bin/python bench/features_device.py`. Median of {args.repeats} batches after one "
        f"warm-up batch per size; baseline: batch size {b0} in the same run.",
        "",
        f"| batch size | median s / batch | images/s | ratio vs batch {b0} | peak GPU memory (GiB) |",
        "|---|---|---|---|---|",
    ]
    for bs, entry in results["sweep"].items():
        if "images_per_s" not in entry:
            lines.append(f"| {bs} | {entry.get('error') or entry.get('skipped')} | | | |")
            continue
        peak = entry.get("max_memory_allocated_gib")
        lines.append(f"| {bs} | {entry['median_batch_s']:.2f} | {entry['images_per_s']:.2f} | "
                     f"{entry.get('ratio_vs_batch_%d' % b0, float('nan')):.2f}x | "
                     f"{'' if peak is None else f'{peak:.1f}'} |")
    e2e = results["end_to_end"]
    lines += ["", "End to end (`features_to_files`, shards and feature files): "
              + (f"{e2e['images']} images at batch size {e2e['batch_size']} in {e2e['s']:.1f} s, "
                 f"{e2e['images_per_s']:.2f} images/s, {e2e['output_gib']:.2f} GiB of feature files."
                 if "s" in e2e else f"skipped ({e2e['skipped']})."),
              "", f"Weights alone: {results.get('weights_gib', float('nan')):.1f} GiB. Non-finite feature values "
              "(random weights in float16): "
              + ", ".join(f"batch {bs}: {e.get('non_finite_values', '-')}" for bs, e in results["sweep"].items())
              + ".", f"Total time of the script: {results['total_s']:.0f} s."]
    (args.out / "features_device.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
