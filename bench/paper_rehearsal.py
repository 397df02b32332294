"""Benchmark: every CPU stage of the pipeline at the paper's sizes, and a projection of the whole paper.

For one subject at NSD's sizes (subj01: 24,980 training and 2,770 test trials, 8,859 training and
982 test images, 37 sessions of 750 trials, an 81 x 104 x 83 grid with a ~300,000-voxel brain;
SD 1.4 at 320 px: z 6,400, c 77 x 768 = 59,136, ``up_blocks.2`` 640 x 40 x 40 = 1,024,000 values per
image), inputs are made on the fly (random values: only cost is measured) and the pipeline's own
functions run, each stage in its own process:

========================  =====================================================  ======================
stage                     function                                               run at
========================  =====================================================  ======================
``roi_extraction``        :func:`brainldm.nsd.betas.stream_roi_betas`           2 and 4 of 37 sessions
                          (early, ventral, brain in one pass; NSD's chunking)    (linear in sessions)
``pca_z``, ``pca_c``      :func:`brainldm.pca.reduce_feature` (6,400 comp.)   full size
``pca_unet``              the same                                               2 fractions of d
``decode_z``              :func:`brainldm.decoding.decode_latent`, early -> z           full size
``decode_c``              the same, ventral -> c                                 a fraction of targets
``encode_feature``        :func:`brainldm.encoding.encode_feature`, brain        a fraction of voxels
``encode_banded``         :func:`brainldm.encoding.encode_banded`, z + zc        2 band widths, 1 of 9
                          (each band's own model read, as the workflow does)     weights, 2,048 voxels
========================  =====================================================  ======================

Per stage: wall and CPU time, peak RSS (``ru_maxrss`` of the child), bytes read and written
(``rchar`` / ``wchar`` of ``/proc/<pid>/io``: every read and write call, page cache or not) and the
disk of its outputs. A stage run on a fraction is extrapolated by its measured scaling: for the
ridge stages from the times of its own target batches (the job's log: setup = time before the
first batch minus one batch), for sessions and feature dimensions from two runs (a line through
two points). Each stage's numbers are kept in ``bench/results/paper_rehearsal/<stage>.json``; a
rerun measures only the stages without one (``--redo`` to measure again). The report
``bench/results/paper_rehearsal.md`` adds the projection of the whole paper (4 subjects, the
default features of ``config.paper.yaml``) on this CPU, on one GPU from FLOPs (``bench/paper_flops.py``:
counted by torch on SD 1.4's configs; an assumed utilisation until a device run measures it), and its
disk footprint.

    .venv/bin/python bench/paper_rehearsal.py [--stages pca_z decode_z ...] [--workdir DIR] [--redo]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from machine import describe  # noqa: E402

RESULTS = REPO / "bench" / "results" / "paper_rehearsal"
REPORT = REPO / "bench" / "results" / "paper_rehearsal.md"

# The paper's sizes for one subject (subj01, sessions 1-37) and SD 1.4 at 320 px.
VOLUME = (81, 104, 83)
TRIALS_PER_SESSION = 750
SESSIONS = 37
TRAIN_TRIALS, TEST_TRIALS = 24_980, 2_770
TRAIN_IMAGES, TEST_IMAGES = 8_859, 982
SUBJECTS = 4
ALL_IMAGES = SUBJECTS * TRAIN_IMAGES + TEST_IMAGES  # the features hold every image of the four subjects
# Voxels of the decoders' ROIs: assumed sizes of NSD's streams labels (early V1-V3, ventral) at 1.8 mm
# for subj01, of the order the original code's ROIs have; the brain ROI is the grid's ellipsoid.
EARLY_VOXELS, VENTRAL_VOXELS = 6_000, 8_000
Z_DIM, C_DIM, PCA_COMPONENTS = 4 * 40 * 40, 77 * 768, 6_400
# SD 1.4's U-Net (block_out_channels 320, 640, 1280, 1280) on a 40 x 40 latent: each block's output.
UNET_DIMS = {"down_blocks.1": 640 * 10 * 10, "down_blocks.2": 1280 * 5 * 5, "mid_block": 1280 * 5 * 5,
             "up_blocks.1": 1280 * 20 * 20, "up_blocks.2": 640 * 40 * 40}
UNET_STAGES = 3  # denoising stages per block (t 0.2, 0.66, 1)
ZC_FEATURES, BANDED_MODELS = 9, 5  # 3 noise levels x 3 stages; joint z + zc models per subject
ALPHAS = np.logspace(0, 7, 15).tolist()  # the configuration's grid (15 values)
TARGETS_BATCH, VOXELS_BATCH = 2048, 4096
BANDED_WEIGHTS = 9  # the default banded_n_ratios
BANDED_BATCH, BANDED_VOXELS = 1024, 2048  # the joint model is measured on two batches of 1,024 voxels




def use_smoke_sizes() -> None:
    """Sizes of a minute-long check of this script's code paths (``--smoke``; results kept apart)."""
    global VOLUME, SESSIONS, TRIALS_PER_SESSION, TRAIN_IMAGES, TEST_IMAGES, ALL_IMAGES, EARLY_VOXELS
    global VENTRAL_VOXELS, Z_DIM, C_DIM, PCA_COMPONENTS, UNET_DIMS, TARGETS_BATCH, VOXELS_BATCH, RESULTS, REPORT
    global BANDED_BATCH, BANDED_VOXELS
    VOLUME, SESSIONS, TRIALS_PER_SESSION = (20, 24, 20), 5, 60
    TRAIN_IMAGES, TEST_IMAGES = 200, 30
    ALL_IMAGES = SUBJECTS * TRAIN_IMAGES + TEST_IMAGES
    EARLY_VOXELS, VENTRAL_VOXELS, Z_DIM, C_DIM, PCA_COMPONENTS = 300, 400, 256, 1024, 64
    UNET_DIMS = {name: dim // 250 for name, dim in UNET_DIMS.items()}
    TARGETS_BATCH, VOXELS_BATCH = 64, 256
    BANDED_BATCH, BANDED_VOXELS = 128, 256
    RESULTS = REPO / "bench" / "results" / "paper_rehearsal_smoke"
    REPORT = RESULTS / "report.md"


# --------------------------------------------------------------------------- inputs


def brain_mask() -> np.ndarray:
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in VOLUME], indexing="ij"))
    return ((grid**2).sum(0) < 0.9).ravel()


def trial_table(n_sessions: int):
    """NSD-like trials: 10% test trials cycling over the 982 test images, the rest training images."""
    import pandas as pd

    n = n_sessions * TRIALS_PER_SESSION
    test = np.arange(n) % 10 == 0
    nsd_id = np.where(test, np.cumsum(test) % TEST_IMAGES, TEST_IMAGES + np.arange(n) % TRAIN_IMAGES)
    return pd.DataFrame({"session": np.repeat(np.arange(1, n_sessions + 1), TRIALS_PER_SESSION),
                         "trial_in_session": np.tile(np.arange(TRIALS_PER_SESSION), n_sessions),
                         "nsd_id": nsd_id, "split": np.where(test, "test", "train")})


def make_sessions(folder: Path, n_sessions: int) -> None:
    """int16 betas as NSD ships them: (trials, Z, Y, X), one uncompressed chunk per voxel."""
    import h5py

    rng = np.random.default_rng(0)
    inside = brain_mask().reshape(VOLUME).T
    for session in range(1, n_sessions + 1):
        path = folder / f"betas_session{session:02d}.hdf5"
        if path.exists():
            continue
        with h5py.File(path.with_suffix(".part"), "w") as h5:
            data = h5.create_dataset("betas", shape=(TRIALS_PER_SESSION,) + VOLUME[::-1], dtype=np.int16,
                                     chunks=(TRIALS_PER_SESSION, 1, 1, 1))
            for z in range(VOLUME[2]):
                plane = np.zeros((TRIALS_PER_SESSION,) + inside.shape[1:], np.int16)
                plane[:, inside[z]] = rng.integers(-900, 900, (TRIALS_PER_SESSION, inside[z].sum()), np.int16)
                data[:, z] = plane
        path.with_suffix(".part").rename(path)


def roi_indices() -> dict[str, np.ndarray]:
    brain = np.flatnonzero(brain_mask())
    rng = np.random.default_rng(1)
    early, ventral = np.split(np.sort(rng.choice(brain, EARLY_VOXELS + VENTRAL_VOXELS, replace=False)),
                              [EARLY_VOXELS])
    return {"early": early, "ventral": ventral, "brain": brain}


def write_brain_betas(path: Path, n_voxels: int, seed: int) -> None:
    """An ingestion ROI-betas file of the paper's trial counts (train per trial, test per image), written by
    the pipeline's own writer (its chunk layout is what the encoding stages read)."""
    from brainldm.nsd.roi_betas import roi_betas_writer

    trials = trial_table(SESSIONS)
    train = trials[trials["split"] == "train"]
    rng = np.random.default_rng(seed)
    with roi_betas_writer(path, len(train), n_voxels) as writer:
        for start in range(0, len(train), 2048):
            writer.write_train(start, rng.standard_normal((min(2048, len(train) - start), n_voxels), np.float32))
        writer.finish(train_ids=train["nsd_id"].to_numpy(), train_sessions=train["session"].to_numpy(),
                      test_betas=rng.standard_normal((TEST_IMAGES, n_voxels), np.float32),
                      test_ids=np.arange(TEST_IMAGES), voxel_index=np.flatnonzero(brain_mask())[:n_voxels],
                      volume_shape=VOLUME, affine=np.eye(4), roi="brain", units="random (cost only)")


def write_features(path: Path, dim: int, seed: int) -> None:
    """A merged feature file: every image of the subject (sorted 73k ids), float32, a decaying spectrum."""
    import h5py

    from brainldm.feature_file import create_feature_file

    n = TRAIN_IMAGES + TEST_IMAGES
    rng = np.random.default_rng(seed)
    scale = (1 + np.arange(dim, dtype=np.float32)) ** -0.5
    with h5py.File(path, "w") as h5:
        data = create_feature_file(h5, dim, np.float32, np.arange(n), (dim,), {})
        for start in range(0, n, 256):
            stop = min(start + 256, n)
            data[start:stop] = rng.standard_normal((stop - start, dim), np.float32) * scale


def write_pca_features(path: Path, seed: int, components: int | None = None) -> None:
    """A PCA feature file as reduce_features writes it (6,400 components unless ``components``)."""
    from brainldm.reduced import write_reduced_feature

    components = components or PCA_COMPONENTS
    rng = np.random.default_rng(seed)
    train = rng.standard_normal((TRAIN_IMAGES, components), np.float32)
    test = rng.standard_normal((TEST_IMAGES, components), np.float32)
    write_reduced_feature(path, train, np.arange(TEST_IMAGES, TEST_IMAGES + TRAIN_IMAGES), test, np.arange(TEST_IMAGES))


def write_alone_result(path: Path, n_voxels: int) -> None:
    """An encode_feature result as encode_banded reads it: each band's own test r and R^2 per voxel."""
    import h5py

    with h5py.File(path, "w") as h5:
        h5["r"] = np.zeros(n_voxels)
        h5["r2"] = np.zeros(n_voxels)
        h5["significant"] = np.zeros(n_voxels, bool)
        h5["voxel_index"] = np.flatnonzero(brain_mask())[:n_voxels]


def write_reference(path: Path) -> None:
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros(VOLUME, np.int16), np.eye(4)), path)


# --------------------------------------------------------------------------- stages (run in the child)


def run_roi_extraction(work: Path, sessions: int) -> list[Path]:
    from brainldm.nsd.betas import stream_roi_betas

    make_sessions(work, sessions)  # not measured: the parent made them before (kept between runs)
    trials = trial_table(sessions)
    files = {s: str(work / f"betas_session{s:02d}.hdf5") for s in range(1, sessions + 1)}
    out = {name: str(work / f"out_{name}.h5") for name in ("early", "ventral", "brain")}
    stream_roi_betas(trials, files, roi_indices(), VOLUME, np.eye(4), out)
    return [Path(p) for p in out.values()]


def write_trials_tsv(path: Path) -> None:
    trial_table(SESSIONS).to_csv(path, sep="\t", index=False)


def run_pca(work: Path, feature: str, dim: int) -> list[Path]:
    from brainldm.pca import reduce_feature

    out = work / f"pca_{feature}_{dim}.h5"
    reduce_feature(work / f"features_{feature}_{dim}.h5", work / "trials.tsv", out, PCA_COMPONENTS)
    return [out]


def run_decode(work: Path, target: str, n_targets: int) -> list[Path]:
    from brainldm.decoding import decode_latent

    roi = "early" if target == "z" else "ventral"
    out = work / f"decoded_{target}.h5"
    settings = {"alphas": ALPHAS, "cv": 5, "backend": "numpy", "n_targets_batch": TARGETS_BATCH}
    decode_latent(work / f"betas_{roi}.h5", work / f"features_{target}_{n_targets}.h5", out, settings, "subj01", roi, target)
    return [out]


def encoding_settings() -> dict:
    return {"alphas": ALPHAS, "cv": 5, "backend": "numpy", "n_targets_batch": VOXELS_BATCH}


def run_encode_feature(work: Path, n_voxels: int) -> list[Path]:
    from brainldm.encoding import FEATURE_MAPS, encode_feature

    maps = {m: str(work / f"encode_{m}.nii.gz") for m in FEATURE_MAPS}
    encode_feature(work / f"betas_brain_{n_voxels}.h5", work / "pca_z.h5", work / "reference.nii.gz",
                   work / "encode.h5", maps, encoding_settings(), feature="z")
    return [work / "encode.h5", *map(Path, maps.values())]


def run_encode_banded(work: Path, width: int) -> list[Path]:
    """The joint z + zc model as the workflow runs it (each band's own model read from its encode_feature result),
    on bands of ``width`` PCA components each and one band weight."""
    from brainldm.encoding import banded_map_names, encode_banded

    maps = {m: str(work / f"banded_{m}.nii.gz") for m in banded_map_names(("z", "zc"))}
    features = {name: work / f"pca_{name}_{width}.h5" for name in ("z", "zc")}
    alone = {name: work / f"alone_{name}.h5" for name in ("z", "zc")}
    settings = dict(encoding_settings(), n_targets_batch=BANDED_BATCH, banded_n_ratios=1)
    encode_banded(work / f"betas_brain_{BANDED_VOXELS}.h5", features, work / "reference.nii.gz", work / "banded.h5",
                  maps, settings, alone)
    return [work / "banded.h5", *map(Path, maps.values())]


def run_baseline() -> list[Path]:
    """A job's interpreter with the stages' modules imported, doing nothing: the base of every peak RSS."""
    import brainldm.decoding  # noqa: F401
    import brainldm.encoding  # noqa: F401
    import brainldm.nsd.betas  # noqa: F401
    import brainldm.pca  # noqa: F401

    return []


CHILD_RUNS = {
    "roi_extraction": lambda work, size: run_roi_extraction(work, size),
    "pca_z": lambda work, size: run_pca(work, "z", size),
    "pca_c": lambda work, size: run_pca(work, "c", size),
    "pca_unet": lambda work, size: run_pca(work, "unet", size),
    "decode_z": lambda work, size: run_decode(work, "z", size),
    "decode_c": lambda work, size: run_decode(work, "c", size),
    "encode_feature": lambda work, size: run_encode_feature(work, size),
    "encode_banded": lambda work, size: run_encode_banded(work, size),
    "baseline": lambda work, size: run_baseline(),
}


def child(stage: str, work: Path, size: int, report: Path) -> None:
    """Run one stage under a log handler that timestamps each target batch; write what was measured."""
    import logging

    batches = []

    class Batches(logging.Handler):
        def emit(self, record):
            found = re.search(r"(?:voxels|targets) (\d+)-(\d+) of (\d+)", record.getMessage())
            if found:
                batches.append((time.perf_counter(), *map(int, found.groups())))

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger().addHandler(Batches())
    start = time.perf_counter()
    outputs = CHILD_RUNS[stage](work, size)
    wall = time.perf_counter() - start
    io = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    report.write_text(json.dumps({
        "wall_s": wall, "batch_times_s": [t - start for t, *_ in batches],
        "batch_bounds": [b[1:] for b in batches],
        "rchar": int(io["rchar"]), "wchar": int(io["wchar"]),
        "output_bytes": sum(p.stat().st_size for p in outputs if p.exists()),
    }))


# --------------------------------------------------------------------------- measuring (the parent)


def measure(stage: str, work: Path, size: int) -> dict:
    """One child run of ``stage`` at ``size``: wall, CPU, peak RSS, I/O, output disk."""
    report = work / f"report_{stage}_{size}.json"
    command = [sys.executable, __file__, "--child", stage, str(work), str(size), str(report)]
    if RESULTS.name.endswith("_smoke"):
        command.append("--smoke")
    start = time.perf_counter()
    process = subprocess.Popen(command, env=dict(os.environ, OMP_NUM_THREADS=str(os.cpu_count())))
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"stage {stage} at size {size} failed (exit {os.waitstatus_to_exitcode(status)})")
    out = json.loads(report.read_text())
    out.update(size=size, process_wall_s=wall, cpu_s=usage.ru_utime + usage.ru_stime,
               peak_rss_mb=usage.ru_maxrss / 1024)
    print(f"{stage} size {size}: {out['wall_s']:.1f} s wall, {out['cpu_s']:.1f} s CPU, "
          f"{out['peak_rss_mb']:.0f} MB peak", flush=True)
    return out


def through_two(points: list[dict], key: str, at: float) -> float:
    """The value of ``key`` at size ``at`` on the line through two measured points."""
    (x0, y0), (x1, y1) = [(p["size"], p[key]) for p in points]
    value = y0 + (y1 - y0) * (at - x0) / (x1 - x0)
    # beyond both points a cost does not fall below the larger one measured (noise in short runs)
    return max(value, y0, y1) if at > max(x0, x1) else value


def by_batches(run: dict, total: int) -> dict:
    """Setup and per-target cost from one run's batch times; the full job's time for ``total`` targets."""
    times, bounds = run["batch_times_s"], run["batch_bounds"]
    if len(times) < 2:
        raise RuntimeError("need at least two target batches to extrapolate")
    per_target = (times[-1] - times[0]) / (bounds[-1][1] - bounds[0][1])
    setup = times[0] - per_target * (bounds[0][1] - bounds[0][0])
    tail = run["wall_s"] - times[-1]  # statistics and maps after the last batch (grows with targets)
    measured = bounds[-1][1]
    scale = total / measured
    return {"setup_s": setup, "per_target_s": per_target, "wall_s": setup + per_target * total + tail * scale,
            "cpu_s": run["cpu_s"] * (setup + per_target * total + tail * scale) / run["wall_s"],
            "measured_targets": measured, "total_targets": total}


def stage_roi_extraction(work: Path, args) -> dict:
    runs = []
    for sessions in args.sessions:
        make_sessions(work, sessions)
        runs.append(measure("roi_extraction", work, sessions))
    full = {key: through_two(runs, key, SESSIONS) for key in ("wall_s", "cpu_s", "rchar", "wchar", "output_bytes")}
    # test sums of the 982 test images are held for every ROI voxel; fewer sessions saw fewer of them
    seen = min(TEST_IMAGES, args.sessions[-1] * TRIALS_PER_SESSION // 10)
    extra = (TEST_IMAGES - seen) * sum(len(v) for v in roi_indices().values()) * 4 / 2**20
    full["peak_rss_mb"] = runs[-1]["peak_rss_mb"] + extra
    return {"runs": runs, "full": full, "fraction": f"{args.sessions} of {SESSIONS} sessions",
            "scaling": "linear in sessions through the two runs; peak RSS + the test sums of unseen test images"}


def stage_pca(work: Path, feature: str, dims: list[int], full_dim: int) -> dict:
    write_trials_tsv(work / "trials.tsv")
    runs = []
    for dim in dims:
        path = work / f"features_{feature}_{dim}.h5"
        if not path.exists():
            write_features(path, dim, seed=dim)
        runs.append(measure(f"pca_{feature}", work, dim))
        path.unlink()
    if len(runs) == 1:
        return {"runs": runs, "full": {k: runs[0][k] for k in ("wall_s", "cpu_s", "peak_rss_mb", "rchar", "wchar",
                                                                "output_bytes")}, "fraction": "full size"}
    full = {key: through_two(runs, key, full_dim) for key in ("wall_s", "cpu_s", "rchar", "wchar", "output_bytes",
                                                             "peak_rss_mb")}
    return {"runs": runs, "full": full, "fraction": f"d = {dims} of {full_dim}",
            "scaling": "linear in d through the two runs (time, I/O and peak RSS)"}


def stage_decode(work: Path, target: str, n_targets: int, full_targets: int) -> dict:
    roi, voxels = ("early", EARLY_VOXELS) if target == "z" else ("ventral", VENTRAL_VOXELS)
    betas = work / f"betas_{roi}.h5"
    if not betas.exists():
        write_brain_betas(betas, voxels, seed=voxels)
    features = work / f"features_{target}_{n_targets}.h5"
    if not features.exists():
        write_features(features, n_targets, seed=7)
    run = measure(f"decode_{target}", work, n_targets)
    features.unlink()
    full = by_batches(run, full_targets)
    full.update(peak_rss_mb=run["peak_rss_mb"] + TEST_IMAGES * (full_targets - n_targets) * 4 * 3 / 2**20,
                rchar=run["rchar"] * full_targets / n_targets, wchar=run["wchar"] * full_targets / n_targets,
                output_bytes=run["output_bytes"] * full_targets / n_targets)
    return {"runs": [run], "full": full, "fraction": f"{n_targets} of {full_targets} targets",
            "scaling": "setup and per-target time from the job's target batches; RSS + predictions of the rest"}


def stage_encode(work: Path, n_voxels: int, full_voxels: int) -> dict:
    write_reference(work / "reference.nii.gz")
    if not (work / "pca_z.h5").exists():
        write_pca_features(work / "pca_z.h5", seed=1)
    betas = work / f"betas_brain_{n_voxels}.h5"
    if not betas.exists():
        write_brain_betas(betas, n_voxels, seed=3)
    run = measure("encode_feature", work, n_voxels)
    full = by_batches(run, full_voxels)
    full.update(peak_rss_mb=run["peak_rss_mb"], rchar=run["rchar"] * full_voxels / n_voxels,
                wchar=run["wchar"] * full_voxels / n_voxels, output_bytes=run["output_bytes"])
    return {"runs": [run], "full": full, "fraction": f"{n_voxels} of {full_voxels} voxels",
            "scaling": "setup and per-voxel time from the job's voxel batches; peak RSS is per batch (flat)"}


def power_law(points: list[tuple[float, float]], at: float) -> float:
    """``c x^e`` through two measured points, at ``at`` (the exponent is measured, not assumed)."""
    (x0, y0), (x1, y1) = points
    if min(y0, y1) <= 0:  # a setup lost in the noise of a short run: no exponent to measure, take it as linear
        return float(max(y0, y1, 0.0) * at / x1)
    exponent = np.log(y1 / y0) / np.log(x1 / x0)
    return float(y1 * (at / x1) ** exponent)


def stage_encode_banded(work: Path, widths: list[int], full_voxels: int) -> dict:
    """The joint model's cost: per band weight, a setup (the folds' decompositions: grows with the width p of the
    two bands) and a per-voxel cost (grows with p); measured at two widths on ``BANDED_VOXELS`` voxels and one
    weight, extrapolated to 2 x 6,400 components by the power law through the two runs, times the weights."""
    write_reference(work / "reference.nii.gz")
    betas = work / f"betas_brain_{BANDED_VOXELS}.h5"
    if not betas.exists():
        write_brain_betas(betas, BANDED_VOXELS, seed=4)
    for name in ("z", "zc"):
        write_alone_result(work / f"alone_{name}.h5", BANDED_VOXELS)
    runs, fits = [], []
    for width in widths:
        for name in ("z", "zc"):
            write_pca_features(work / f"pca_{name}_{width}.h5", seed=len(name), components=width)
        run = measure("encode_banded", work, width)
        runs.append(run)
        fits.append(by_batches(run, BANDED_VOXELS))
    p = [2 * w for w in widths]
    full_p = 2 * PCA_COMPONENTS
    setup = power_law([(p[-2], fits[-2]["setup_s"]), (p[-1], fits[-1]["setup_s"])], full_p)
    per_voxel = power_law([(p[-2], fits[-2]["per_target_s"]), (p[-1], fits[-1]["per_target_s"])], full_p)
    tail = runs[-1]["wall_s"] - runs[-1]["batch_times_s"][-1]  # statistics and maps (grow with voxels, not p)
    wall = BANDED_WEIGHTS * (setup + per_voxel * full_voxels) + tail * full_voxels / BANDED_VOXELS
    cpu_per_wall = runs[-1]["cpu_s"] / runs[-1]["wall_s"]
    # memory: one weight's decompositions (cv + 1 matrices p x p) and the scaled bands (n x p): a + b p + c p^2
    # through the last three widths (two: a + c p^2)
    rss = [r["peak_rss_mb"] for r in runs]
    if len(runs) >= 3:
        peak = float(np.polyval(np.polyfit(p[-3:], rss[-3:], 2), full_p))
    else:
        peak = rss[0] + (rss[1] - rss[0]) * (full_p**2 - p[0] ** 2) / (p[1] ** 2 - p[0] ** 2)
    full = {"setup_s": setup, "per_target_s": per_voxel, "wall_s": wall, "cpu_s": wall * cpu_per_wall,
            "peak_rss_mb": peak, "rchar": runs[-1]["rchar"] * BANDED_WEIGHTS * full_voxels / BANDED_VOXELS,
            "wchar": runs[-1]["wchar"] * full_voxels / BANDED_VOXELS, "output_bytes": runs[-1]["output_bytes"]
            * full_voxels / BANDED_VOXELS, "measured_fits": fits}
    return {"runs": runs, "full": full,
            "fraction": f"bands of {widths} of {PCA_COMPONENTS} components, 1 of {BANDED_WEIGHTS} band weights, "
                        f"{BANDED_VOXELS:,} of {full_voxels:,} voxels",
            "scaling": f"per weight: setup and per-voxel time from the job's voxel batches at each width, to 2 x "
                       f"{PCA_COMPONENTS:,} components by the power law through the last two widths, x {BANDED_WEIGHTS} "
                       "weights (the loop repeats the same work); peak RSS a + b p + c p^2 through the last three widths"}


def stage_baseline(work: Path) -> dict:
    run = measure("baseline", work, 0)
    return {"runs": [run], "full": {k: run[k] for k in ("wall_s", "cpu_s", "peak_rss_mb", "rchar", "wchar",
                                                        "output_bytes")}, "fraction": "imports only"}


def stages(args) -> dict:
    brain = int(brain_mask().sum())
    return {
        "roi_extraction": lambda work: stage_roi_extraction(work, args),
        "pca_z": lambda work: stage_pca(work, "z", [Z_DIM], Z_DIM),
        "pca_c": lambda work: stage_pca(work, "c", [C_DIM], C_DIM),
        "pca_unet": lambda work: stage_pca(work, "unet", args.unet_dims, UNET_DIMS["up_blocks.2"]),
        "decode_z": lambda work: stage_decode(work, "z", Z_DIM, Z_DIM),
        "decode_c": lambda work: stage_decode(work, "c", args.c_targets, C_DIM),
        "encode_feature": lambda work: stage_encode(work, args.voxels, brain),
        "encode_banded": lambda work: stage_encode_banded(work, args.banded_widths, brain),
        "baseline": lambda work: stage_baseline(work),
    }


# --------------------------------------------------------------------------- projection and report


def pca_cost(results: dict, dim: int) -> dict:
    """A PCA job's cost at ``dim``: z's below the number of images, else the line through c and up_blocks.2."""
    if dim <= Z_DIM:
        return results["pca_z"]["full"]
    low, high = results["pca_c"]["full"], results["pca_unet"]["full"]
    points = [dict(size=C_DIM, **low), dict(size=UNET_DIMS["up_blocks.2"], **high)]
    return {key: through_two(points, key, dim) for key in ("wall_s", "cpu_s", "peak_rss_mb")}


def projection(results: dict) -> tuple[list[tuple], dict]:
    """Jobs of the whole paper (4 subjects, default features) and their CPU time; the disk footprint."""
    unet = [dim for dim in UNET_DIMS.values() for _ in range(UNET_STAGES)]
    pca_dims = [Z_DIM, C_DIM] + [Z_DIM] * ZC_FEATURES + unet
    rows = [("roi_extraction", SUBJECTS, results["roi_extraction"]["full"])]
    pca_jobs = [pca_cost(results, dim) for dim in pca_dims]
    rows.append(("reduce (26 features)", SUBJECTS, {
        "wall_s": sum(j["wall_s"] for j in pca_jobs), "cpu_s": sum(j["cpu_s"] for j in pca_jobs),
        "peak_rss_mb": max(j["peak_rss_mb"] for j in pca_jobs)}))
    rows += [("decode_z", SUBJECTS, results["decode_z"]["full"]), ("decode_c", SUBJECTS, results["decode_c"]["full"])]
    rows.append(("encode_feature", SUBJECTS * len(pca_dims), results["encode_feature"]["full"]))
    rows.append(("encode_banded", SUBJECTS * BANDED_MODELS, results["encode_banded"]["full"]))
    brain = int(brain_mask().sum())
    gb = 1e9
    # features.unet_dtype: float16 (the default) for the U-Net blocks, float32 for z, c and zc
    features = ALL_IMAGES * ((Z_DIM + C_DIM + ZC_FEATURES * Z_DIM) * 4 + sum(unet) * 2) / gb
    features32 = ALL_IMAGES * (Z_DIM + C_DIM + ZC_FEATURES * Z_DIM + sum(unet)) * 4 / gb
    betas = SUBJECTS * (TRAIN_TRIALS + TEST_IMAGES) * (brain + EARLY_VOXELS + VENTRAL_VOXELS) * 4 / gb
    pca = SUBJECTS * len(pca_dims) * (TRAIN_IMAGES + TEST_IMAGES) * PCA_COMPONENTS * 4 / gb
    disk = {"features, U-Net blocks float16 (results/features)": features,
            "ROI betas float32 (4 subjects, early + ventral + brain)": betas,
            "PCA features (4 subjects x 26)": pca,
            f"(features.unet_dtype: float32: {features32:,.0f} for the features)": 0.0,
            "(while gather_features runs, the shards too: a second copy of the features)": features,
            "(with features.keep_shards: true, the shards stay: a second copy of the features)": features}
    return rows, disk


# --------------------------------------------------------------------------- the coefficients of brainldm.costs

COSTS = REPO / "src" / "brainldm" / "data" / "job_costs.json"


def rehearsal_config(n_targets_batch: int, voxels_batch: int) -> dict:
    """The configuration keys :func:`brainldm.costs.work_terms` reads, as the rehearsal ran them."""
    ridge = {"alphas": ALPHAS, "cv": 5}
    return {"pca": {"n_components": PCA_COMPONENTS},
            "decoding": dict(ridge, n_targets_batch=n_targets_batch, targets={"z": "early", "c": "ventral"}),
            "encoding": dict(ridge, n_targets_batch=voxels_batch, roi="brain", banded_n_ratios=1,
                             banded_alphas=None)}


def rehearsal_sizes(sessions: int = SESSIONS, dims: dict | None = None):
    """brainldm.costs' sizes of the rehearsal's subject (``sessions`` of them) and features."""
    from brainldm.costs import SubjectSizes, WorkflowSizes

    trials = trial_table(sessions)
    test = trials["split"] == "test"
    rois = {name: len(index) for name, index in roi_indices().items()}
    subject = SubjectSizes("subj01", sessions, len(trials), int((~test).sum()), int(trials.loc[test, "nsd_id"].nunique()),
                           int(trials.loc[~test, "nsd_id"].nunique()), int(np.prod(VOLUME)), rois,
                           frozenset(trials["nsd_id"].tolist()))
    return WorkflowSizes({"subj01": subject}, dims)


def costs_from(results: dict, machine: dict) -> dict:
    """Per modelled rule: CPU seconds per unit of each work term, and peak = base + factor x bytes held.

    Each coefficient is a measured cost divided by the units of its term at the measured sizes:
    ROI extraction by the line through its two session counts; PCA by the line through its
    four dimensions (intercept: the eigendecomposition, slope: the Gram products); the ridge
    stages from their batch times (setup and per target, ``by_batches``) in CPU seconds.
    """
    from brainldm.costs import work_terms

    base = results["baseline"]["runs"][0]["peak_rss_mb"]
    config = rehearsal_config(TARGETS_BATCH, VOXELS_BATCH)
    rules = {}

    def memory_factor(peak_mb: float, terms: dict) -> float:
        return max(0.0, (peak_mb - base) * 2**20 / terms["memory"])

    runs = results["roi_extraction"]["runs"]
    terms = [work_terms("extract_roi_betas", rehearsal_sizes(r["size"]), {"subject": "subj01"}, config) for r in runs]
    slope = (runs[1]["cpu_s"] - runs[0]["cpu_s"]) / (terms[1]["cpu"]["read"] - terms[0]["cpu"]["read"])
    rules["extract_roi_betas"] = {"cpu": {"read": slope}, "base_mb": base,
                                  "memory_factor": memory_factor(runs[1]["peak_rss_mb"], terms[1])}

    points = [(r["size"], r["cpu_s"], r["peak_rss_mb"]) for stage in ("pca_z", "pca_c", "pca_unet")
              for r in results[stage]["runs"]]
    d, cpu = np.array([p[0] for p in points], float), np.array([p[1] for p in points])
    slope, intercept = np.polyfit(d, cpu, 1)
    n = TRAIN_IMAGES + TEST_IMAGES
    largest = max(points)
    terms = work_terms("reduce_features", rehearsal_sizes(dims={"x": int(largest[0])}), {"subject": "subj01"}, config)
    rules["reduce_features"] = {"cpu": {"gram": slope / n**2, "eig": max(intercept, 0.0) / n**3}, "base_mb": base,
                                "memory_factor": memory_factor(max(p[2] for p in points), terms)}

    def ridge(stage: str, rule: str, wildcards: dict, dims: dict, targets: int) -> dict:
        run, full = results[stage]["runs"][-1], results[stage]["full"]
        per_wall = run["cpu_s"] / run["wall_s"]
        terms = work_terms(rule, rehearsal_sizes(dims=dims), {"subject": "subj01", **wildcards}, config)
        # the fit term counts all targets: the measured per-target cost times the targets, per unit
        return {"cpu": {"setup": full["setup_s"] * per_wall / terms["cpu"]["setup"],
                        "fit": full["per_target_s"] * per_wall * targets / terms["cpu"]["fit"]},
                "memory_factor": memory_factor(run["peak_rss_mb"], terms)}

    fits = [ridge("decode_z", "decode_latent", {"target": "z"}, {"z": Z_DIM, "c": C_DIM}, Z_DIM),
            ridge("decode_c", "decode_latent", {"target": "c"}, {"z": Z_DIM, "c": C_DIM}, C_DIM)]
    rules["decode_latent"] = {"cpu": {t: float(np.mean([f["cpu"][t] for f in fits])) for t in ("setup", "fit")},
                              "base_mb": base, "memory_factor": max(f["memory_factor"] for f in fits)}
    brain = int(brain_mask().sum())
    rules["encode_feature"] = dict(ridge("encode_feature", "encode_feature", {}, {"z": Z_DIM}, brain), base_mb=base)
    banded = results["encode_banded"]
    width, run = banded["runs"][-1]["size"], banded["runs"][-1]
    config_banded = rehearsal_config(TARGETS_BATCH, BANDED_BATCH)
    sizes = rehearsal_sizes(dims={"z": Z_DIM})
    subject = sizes.subjects["subj01"]
    sizes = replace(sizes, subjects={"subj01": replace(subject, roi_voxels={**subject.roi_voxels,
                                                                             "brain": BANDED_VOXELS})})
    config_banded["pca"]["n_components"] = width
    terms = work_terms("encode_banded", sizes, {"subject": "subj01"}, config_banded)
    fit, per_wall = banded["full"]["measured_fits"][-1], run["cpu_s"] / run["wall_s"]
    rules["encode_banded"] = {"cpu": {"setup": fit["setup_s"] * per_wall / terms["cpu"]["setup"],
                                      "fit": fit["per_target_s"] * per_wall * BANDED_VOXELS / terms["cpu"]["fit"]},
                              "base_mb": base, "memory_factor": memory_factor(run["peak_rss_mb"], terms)}
    return {"machine": machine, "date": time.strftime("%Y-%m-%d"), "source": "bench/paper_rehearsal.py",
            "units": "cpu: CPU seconds per unit of each term of brainldm.costs.work_terms; peak MB = base_mb + "
                     "memory_factor x bytes held / 2^20", "rules": rules}


def gpu_projection() -> list[tuple]:
    """The paper on one GPU from FLOPs (bench/paper_flops.py): per stage, its jobs, FLOPs and GPU-hours.

    The diffusion stages' FLOPs are counted by torch on SD 1.4's published configs; the ridge and PCA
    stages' from brainldm.costs' work terms at the paper's sizes. No stage is measured on a device yet.
    """
    from paper_flops import gpu_hours, per_image_flops, ridge_flops, sd14_call_flops

    from brainldm.costs import work_terms

    per_image = per_image_flops(sd14_call_flops(320, 512))
    config = rehearsal_config(TARGETS_BATCH, VOXELS_BATCH)
    config["encoding"]["banded_n_ratios"] = BANDED_WEIGHTS
    unet = [dim for dim in UNET_DIMS.values() for _ in range(UNET_STAGES)]
    dims = {"z": Z_DIM, "c": C_DIM, **{f"f{k}": d for k, d in enumerate([Z_DIM] * ZC_FEATURES + unet)}}
    sizes = rehearsal_sizes(dims=dims)
    subject = {"subject": "subj01"}

    def ridge(rule, wildcards):
        return ridge_flops(work_terms(rule, sizes, {**subject, **wildcards}, config)["cpu"])

    rows = [("extract_features, per image (SD 1.4, 320 px, 3 noise levels x 50 steps)", ALL_IMAGES,
             per_image["features_per_image"], "diffusion"),
            ("reconstruct_images, per test image (512 px, 50 steps, 5 samples of Xc and Xzc)", SUBJECTS * TEST_IMAGES,
             per_image["reconstruction_per_test_image"], "diffusion"),
            ("reduce_features (26 features)", SUBJECTS, ridge_flops(work_terms("reduce_features", sizes, subject,
                                                                               config)["cpu"]), "ridge"),
            ("decode_latent z", SUBJECTS, ridge("decode_latent", {"target": "z"}), "ridge"),
            ("decode_latent c", SUBJECTS, ridge("decode_latent", {"target": "c"}), "ridge"),
            ("encode_feature", SUBJECTS * (2 + ZC_FEATURES + len(unet)), ridge("encode_feature", {}), "ridge"),
            ("encode_banded", SUBJECTS * BANDED_MODELS, ridge("encode_banded", {}), "ridge")]
    return [(stage, jobs, flops, kind, jobs * gpu_hours(flops, kind)) for stage, jobs, flops, kind in rows]


def report(results: dict, machine: dict) -> str:
    lines = ["# Paper-scale rehearsal (one subject at NSD's sizes, the pipeline's own functions)", "",
             f"Machine: {machine['cpu']}, {machine['cores']} cores, Python {machine['python']}; "
             f"GPU: {machine.get('gpu') or 'none'}. Each stage in its own process; inputs random (cost only).",
             "Sizes: 24,980 training / 2,770 test trials, 8,859 / 982 images, "
             f"{int(brain_mask().sum()):,} brain voxels on 81 x 104 x 83, early {EARLY_VOXELS:,} and ventral "
             f"{VENTRAL_VOXELS:,} voxels (assumed ROI sizes), z {Z_DIM:,}, c {C_DIM:,}, "
             f"up_blocks.2 {UNET_DIMS['up_blocks.2']:,} dims, 6,400 PCA components, 15 alphas, 5 folds.", "",
             "| stage | run at | wall (s) | CPU (s) | peak RSS (MB) | read (GB) | written (GB) | outputs (GB) |",
             "|---|---|---|---|---|---|---|---|"]
    for stage, result in results.items():
        for run in result["runs"]:
            lines.append(f"| {stage} | size {run['size']:,} | {run['wall_s']:.1f} | {run['cpu_s']:.1f} | "
                         f"{run['peak_rss_mb']:.0f} | {run['rchar'] / 1e9:.2f} | {run['wchar'] / 1e9:.2f} | "
                         f"{run['output_bytes'] / 1e9:.3f} |")
        full = result["full"]
        lines.append(f"| **{stage}, paper size** | {result['fraction']} -> extrapolated | **{full['wall_s']:.0f}** | "
                     f"{full['cpu_s']:.0f} | **{full['peak_rss_mb']:.0f}** | {full['rchar'] / 1e9:.1f} | "
                     f"{full['wchar'] / 1e9:.1f} | {full['output_bytes'] / 1e9:.2f} |")
    lines += ["", "Scaling used: " + "; ".join(f"{s}: {r['scaling']}" for s, r in results.items() if "scaling" in r)]
    needed = {"roi_extraction", "pca_z", "pca_c", "pca_unet", "decode_z", "decode_c", "encode_feature",
              "encode_banded"}
    if needed <= set(results):
        rows, disk = projection(results)
        lines += ["", "## The whole paper on this CPU (4 subjects, the default 26 features, 5 joint models each)", "",
                  "| stage | jobs | wall per job (h) | CPU-hours | peak RSS per job (GB) |", "|---|---|---|---|---|"]
        total = 0.0
        for stage, jobs, cost in rows:
            total += jobs * cost["cpu_s"] / 3600
            lines.append(f"| {stage} | {jobs} | {cost['wall_s'] / 3600:.2f} | {jobs * cost['cpu_s'] / 3600:.1f} | "
                         f"{cost['peak_rss_mb'] / 1024:.1f} |")
        lines += [f"| **CPU stages** | | | **{total:.0f}** | |", ""]
        lines += gpu_lines()
        lines += ["", "Disk of the intermediate files (GB):", ""]
        lines += [f"- {what}: {size:,.0f}" if size else f"- {what}" for what, size in disk.items()]
        lines.append(f"- total by default (shards removed after the gather): "
                     f"{sum(v for k, v in disk.items() if not k.startswith('(')):,.0f}")
    else:
        lines += ["", f"Not measured yet: {', '.join(sorted(needed - set(results)))} (no projection without them)."]
    return "\n".join(lines) + "\n"


def gpu_lines() -> list[str]:
    """The report's GPU projection (FLOPs; assumed utilisation until a device run measures it)."""
    from paper_flops import GPU, UTILISATION

    lines = ["## The whole paper on one GPU, from FLOPs (not measured: no device run yet)", "",
             f"FLOPs: the diffusion stages counted by torch (`FlopCounterMode`) on SD 1.4's published configs "
             f"(`bench/paper_flops.py`), the ridge and PCA stages from `brainldm.costs`' work terms (2 FLOPs per "
             f"multiply-add). GPU-hours on one {GPU['name']} at an **assumed** {UTILISATION['diffusion']:.0%} of "
             f"its dense float16 peak ({GPU['fp16_tflops']:.0f} TFLOP/s) for diffusion and "
             f"{UTILISATION['ridge']:.0%} of its float32 peak ({GPU['fp32_tflops']:.0f} TFLOP/s) for the ridge "
             "(himalaya's torch_cuda backend, float32): a device run replaces the assumption by a measurement.",
             "", "| stage | images or jobs | TFLOP each | GPU-hours (all) |", "|---|---|---|---|"]
    rows = gpu_projection()
    for stage, jobs, flops, _kind, hours in rows:
        lines.append(f"| {stage} | {jobs:,} | {flops / 1e12:,.1f} | {hours:,.1f} |")
    lines.append(f"| **all stages** | | | **{sum(r[-1] for r in rows):,.0f}** |")
    lines += ["", "Not counted: the evaluation networks (Inception v3, AlexNet, CLIP ViT-L/14, EfficientNet-B1, "
              "SwAV ResNet-50: about 0.1 TFLOP per image by their published sizes, 11 images per test image: "
              "well under 1% of the reconstructions)."]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", nargs="+", default=None, help="stages to measure (default: all)")
    parser.add_argument("--workdir", default=None, help="folder for the inputs (default: a temporary one)")
    parser.add_argument("--redo", action="store_true", help="measure stages that have results again")
    parser.add_argument("--sessions", type=int, nargs=2, default=[2, 4])
    parser.add_argument("--unet-dims", type=int, nargs=2, default=[65_536, 131_072],
                        help="two fractions of up_blocks.2's dimensions (the line through them reaches 1,024,000)")
    parser.add_argument("--c-targets", type=int, default=3 * TARGETS_BATCH)
    parser.add_argument("--voxels", type=int, default=3 * VOXELS_BATCH)
    parser.add_argument("--banded-widths", type=int, nargs="+", default=[800, 1600, 3200],
                        help="widths of each band (PCA components) for the joint model (the paper: 6,400): time by "
                             "the power law through the last two, memory by the quadratic through the last three")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: check the code paths in a minute")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        use_smoke_sizes()
        args.unet_dims = [UNET_DIMS["up_blocks.2"] // 4, UNET_DIMS["up_blocks.2"] // 2]
        args.c_targets, args.voxels, args.banded_widths = 3 * TARGETS_BATCH, 3 * VOXELS_BATCH, [8, 16]
    if args.child:
        stage, work, size, out = args.child
        child(stage, Path(work), int(size), Path(out))
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="paper_rehearsal_"))
    work.mkdir(parents=True, exist_ok=True)
    machine = describe()
    try:
        for stage, run in stages(args).items():
            path = RESULTS / f"{stage}.json"
            if (args.stages and stage not in args.stages) or (path.exists() and not args.redo):
                continue
            result = run(work)
            result["machine"] = machine
            result["date"] = time.strftime("%Y-%m-%d")
            path.write_text(json.dumps(result, indent=1))
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    results = {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))}
    order = list(stages(args))
    results = {s: results[s] for s in order if s in results}
    REPORT.write_text(report(results, machine))
    if set(stages(args)) <= set(results):
        costs = RESULTS / "job_costs.json" if RESULTS.name.endswith("_smoke") else COSTS
        costs.parent.mkdir(exist_ok=True)
        costs.write_text(json.dumps(costs_from(results, machine), indent=1) + "\n")
        print(f"coefficients of brainldm.costs written to {costs.relative_to(REPO)}")
    print(REPORT.read_text())


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    main()
