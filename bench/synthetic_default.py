"""Benchmark: time to build the embedded default (synthetic NSD tree and model presets).

Baselines in the same run:
* the synthetic subject is compared with the I/O floor, writing arrays of the
  same shape, dtype and compression without any planting (ratio = overhead);
* the ``sd14`` preset is compared with the ``tiny`` one (ratio = cost of SD 1.4's size).

Writes ``bench/results/synthetic_default.json`` and ``.md``. Usage::

    .venv/bin/python bench/synthetic_default.py [--repeats 3] [--skip-sd14]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from brainldm.config import validate_config  # noqa: E402
from brainldm.synthetic import SyntheticDesign, build_synthetic_anatomy, build_synthetic_stimuli, build_synthetic_subject  # noqa: E402
from brainldm.synthetic.presets import build_model  # noqa: E402
from machine import describe  # noqa: E402


def timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def io_floor(out: Path, labels_path: Path, design: SyntheticDesign, formats) -> None:
    """Write one subject's worth of random betas, as the generator does, with no planting."""
    anatomy = nib.load(labels_path)
    rng = np.random.default_rng(0)
    brain = np.asarray(anatomy.dataobj).ravel() >= 0
    for session in range(1, design.sessions_released + 1):
        volume = np.zeros((brain.size, design.trials_per_session), np.int16)
        volume[brain] = rng.integers(-900, 900, size=(int(brain.sum()), design.trials_per_session), dtype=np.int16)
        volume = volume.reshape(anatomy.shape + (-1,))
        if "hdf5" in formats:
            with h5py.File(out / f"s{session}.hdf5", "w") as h5:
                h5.create_dataset("betas", data=volume.transpose(3, 2, 1, 0), chunks=(1,) + anatomy.shape[::-1],
                                  compression="gzip", compression_opts=1)
        if "nii.gz" in formats:
            nib.save(nib.Nifti1Image(volume, anatomy.affine), out / f"s{session}.nii.gz")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-sd14", action="store_true", help="skip the SD 1.4-size build (about 4 GB on disk)")
    args = parser.parse_args()

    config = validate_config(yaml.safe_load((REPO / "config.yaml").read_text()),
                             built_by_workflow={"nsd_root": ["resources/synthetic_nsd"],
                                                "model": ["resources/models/tiny"]})
    synthetic = config["synthetic"]
    design = SyntheticDesign.from_config(synthetic)
    subject = config["subjects"][0]
    results = {"machine": describe(), "config": "config.yaml (the demo default)", "repeats": args.repeats}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        labels = tmp / "anatomy.nii.gz"
        results["anatomy_s"] = timed(lambda: build_synthetic_anatomy(
            labels, tmp / f"xfm{time.perf_counter_ns()}", synthetic["pycortex_subject"],
            synthetic["pycortex_transform"], synthetic["voxel_downsample"], "bench"), 1)
        root, truth = tmp / "nsd", tmp / "truth"
        results["stimuli_s"] = timed(lambda: build_synthetic_stimuli(root, truth / "scenes.h5", synthetic), args.repeats)
        results["subject_s"] = timed(lambda: build_synthetic_subject(root, subject, labels, truth / "scenes.h5",
                                                           truth / f"{subject}.h5", synthetic), args.repeats)

        def floor():
            out = tmp / "floor"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            io_floor(out, labels, design, synthetic["betas_formats"])

        results["subject_io_floor_s"] = timed(floor, args.repeats)
        captions = [root / "nsddata_stimuli/stimuli/nsd/annotations/captions_train2017.json",
                    root / "nsddata_stimuli/stimuli/nsd/annotations/captions_val2017.json"]
        results["model_tiny_s"] = timed(
            lambda: build_model("tiny", captions, tmp / "tiny", seed=0), args.repeats)
        if not args.skip_sd14:
            results["model_sd14_s"] = timed(lambda: build_model("sd14", captions, tmp / "sd14", seed=0), 1)
            results["model_sd14_bytes"] = sum(p.stat().st_size for p in (tmp / "sd14").rglob("*") if p.is_file())
        results["model_tiny_bytes"] = sum(p.stat().st_size for p in (tmp / "tiny").rglob("*") if p.is_file())

    med = {k: statistics.median(v) for k, v in results.items() if k.endswith("_s")}
    results["median_s"] = med
    results["ratios"] = {"subject_over_io_floor": med["subject_s"] / med["subject_io_floor_s"]}
    if "model_sd14_s" in med:
        results["ratios"]["sd14_over_tiny_build"] = med["model_sd14_s"] / med["model_tiny_s"]
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "synthetic_default.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# Building the embedded default",
        "",
        f"Machine: {results['machine']['cpu']}, {results['machine']['cores']} cores, CPU only, "
        f"torch {results['machine'].get('torch')}. Medians of {args.repeats} runs (anatomy and sd14: 1 run).",
        "Command: `.venv/bin/python bench/synthetic_default.py`",
        "",
        "| step | median s |",
        "|---|---|",
        *[f"| {k[:-2]} | {v:.2f} |" for k, v in med.items()],
        "",
        "| ratio | value |",
        "|---|---|",
        *[f"| {k} | {v:.2f} |" for k, v in results["ratios"].items()],
        "",
        f"Tiny model on disk: {results['model_tiny_bytes'] / 1e6:.1f} MB"
        + (f"; sd14: {results['model_sd14_bytes'] / 1e9:.2f} GB." if "model_sd14_bytes" in results else "."),
    ]
    (out_dir / "synthetic_default.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
