"""Benchmark: the streamed PCA of ``brainldm.pca`` against the old in-memory PCA, at the paper's size.

One subject at the paper's size: 8,859 training + 982 test images (the test
images interleaved with the training ones in id order, as NSD's shared images
are), 6,400 components, one U-Net feature of 640 x 40 x 40 = 1,024,000 float32
dimensions. The feature files are HDF5 chunked as the merged feature files are
(:func:`brainldm.feature_file.feature_chunks`: 64 rows x 16,384 columns), random
values with a decaying column scale (distinct eigenvalues).

* ``streamed``: :func:`brainldm.pca.reduce_feature`, the pipeline's code
  (column blocks from the file, Gram and cross Gram, no components);
* ``in-memory``: the code before it (a copy below): the training and test rows
  loaded whole, :func:`old_fit_pca` forms the components, ``transform`` projects.
  It needs the whole matrix and the components in memory (about 62 GB at the
  paper's d), so it runs at ``--baseline-dim`` only, where it also checks that
  both give the same scores.

A 2-core machine computes the paper's d = 1,024,000 Gram (8,859² x 1,024,000
multiply-adds) in about half an hour, so the streamed PCA runs at fractions of d
(``--dims``) and its time and bytes read are extrapolated linearly in d (a fit
through the measured points: the eigendecomposition and the scores do not
depend on d, the Gram and the reads are linear in it). Its peak memory does not
grow with d but for the mean (4 bytes a dimension): the Gram (n²), the cross
Gram, the eigendecomposition and one column block are the same at every d.

Each run is its own process; its wall time, CPU time (user + system, all
threads), peak RSS (``VmHWM``) and bytes read (``/proc/self/io``: ``rchar``,
all reads; ``read_bytes``, from the disk) around the reduction. The file's pages
are dropped from the page cache (``posix_fadvise DONTNEED``) before each run, so
reads are cold. Medians of ``--repeats`` runs. The generated files are deleted
at the end. Results: ``bench/results/pca_streaming.md``.

    nice -n 10 .venv/bin/python bench/pca_streaming.py [--dims 65536 262144] [--baseline-dim 65536] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from machine import describe  # noqa: E402

PAPER_DIM = 640 * 40 * 40  # a U-Net block of SD 1.4 at 320 px latents
N_TRAIN, N_TEST, COMPONENTS = 8859, 982, 6400
GB = 1e9


# ----------------------------------------------------------------------------- the code before (baseline)

OLD_BLOCK = 4096


@dataclass
class OldPCA:
    """The old PCA: ``transform(x) = (x - mean) @ components.T``."""

    mean: np.ndarray
    components: np.ndarray
    explained_variance: np.ndarray
    total_variance: float

    def transform(self, x: np.ndarray) -> np.ndarray:
        out = np.empty((len(x), len(self.components)), dtype=np.float32)
        for start in range(0, len(x), OLD_BLOCK):
            out[start:start + OLD_BLOCK] = (x[start:start + OLD_BLOCK] - self.mean) @ self.components.T
        return out


def old_fit_pca(x: np.ndarray, n_components: int) -> OldPCA:
    """``brainldm.pca.fit_pca`` before streaming (its n <= d path; components formed)."""
    n, d = x.shape
    k = int(min(n_components, n - 1, d))
    mean = x.mean(axis=0, dtype=np.float64).astype(np.float32)
    gram = np.zeros((n, n))
    for start in range(0, d, OLD_BLOCK):
        block = (x[:, start:start + OLD_BLOCK] - mean[start:start + OLD_BLOCK]).astype(np.float64)
        gram += block @ block.T
    total = float(np.trace(gram))
    values, vectors = np.linalg.eigh(gram)
    order = np.argsort(values)[::-1][:k]
    values, vectors = np.clip(values[order], 0, None), vectors[:, order]
    components = np.empty((k, d), dtype=np.float32)
    scale = 1 / np.sqrt(np.where(values > 0, values, np.inf))
    for start in range(0, d, OLD_BLOCK):
        block = (x[:, start:start + OLD_BLOCK] - mean[start:start + OLD_BLOCK]).astype(np.float64)
        components[:, start:start + OLD_BLOCK] = (vectors * scale).T @ block
    signs = np.sign(components[np.arange(k), np.abs(components).argmax(axis=1)])
    components *= np.where(signs == 0, 1, signs)[:, None]
    return OldPCA(mean, components, values / (n - 1), total / (n - 1))


def old_reduce(feature_path, trials_path, out_path, n_components: int) -> None:
    """``reduce_feature`` before streaming: the rows loaded whole, then :func:`old_fit_pca`."""
    import h5py
    import pandas as pd

    from brainldm.files import rows_of_ids

    trials = pd.read_csv(trials_path, sep="\t")
    train_ids = np.unique(trials.loc[trials["split"] == "train", "nsd_id"])
    test_ids = np.unique(trials.loc[trials["split"] == "test", "nsd_id"])
    with h5py.File(feature_path, "r") as h5:
        ids, data = h5["nsd_ids"][:], h5["features"]
        train = data[np.sort(rows_of_ids(ids, train_ids, feature_path))]
        test = data[np.sort(rows_of_ids(ids, test_ids, feature_path))]
    pca = old_fit_pca(train, n_components)
    with h5py.File(out_path, "w") as out:
        out["train"], out["test"] = pca.transform(train), pca.transform(test)
        out["explained_variance_ratio"] = pca.explained_variance / pca.total_variance


# ----------------------------------------------------------------------------- data and runs


def make_feature_file(path: Path, n: int, dim: int, seed: int = 0) -> None:
    """One subject's feature file: sorted ids, rows written a chunk row at a time as the merge writes them."""
    import h5py

    from brainldm.feature_file import create_feature_file

    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(73000, n, replace=False))
    scale = (1 + np.arange(dim) / 64).astype(np.float32) ** -0.5
    with h5py.File(path, "w") as h5:
        data = create_feature_file(h5, dim, np.float32, ids, (dim,), {})
        rows = data.chunks[0]
        for start in range(0, n, rows):
            block = rng.standard_normal((min(rows, n - start), dim), dtype=np.float32)
            block *= scale
            data[start:start + len(block)] = block


def write_trials(path: Path, feature_path: Path, n_test: int, seed: int = 0) -> None:
    """Train and test ids of the file's images, test images shown 3 times (the reducer takes unique ids)."""
    import h5py
    import pandas as pd

    with h5py.File(feature_path, "r") as h5:
        ids = h5["nsd_ids"][:]
    test = np.sort(np.random.default_rng(seed + 1).choice(ids, n_test, replace=False))
    train = np.setdiff1d(ids, test)
    pd.DataFrame({"nsd_id": np.r_[train, np.repeat(test, 3)],
                  "split": ["train"] * len(train) + ["test"] * 3 * len(test)}).to_csv(path, sep="\t", index=False)


def drop_from_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _peak_rss_mb() -> float:
    """``VmHWM``: this process's peak RSS since its ``exec`` (``ru_maxrss`` keeps the parent's from the fork)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def _io() -> dict:
    with open("/proc/self/io") as f:
        return {key: int(value) for key, value in (line.split(":") for line in f)}


def child(variant: str, feature_path: str, trials_path: str, out_path: str, components: str) -> None:
    """One reduction in this process; prints its measures as JSON."""
    import h5py  # noqa: F401  (imported before the measure)

    from brainldm.pca import reduce_feature

    before, start = _io(), time.perf_counter()
    if variant == "streamed":
        reduce_feature(feature_path, trials_path, out_path, int(components))
    else:
        old_reduce(feature_path, trials_path, out_path, int(components))
    wall, after = time.perf_counter() - start, _io()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": _peak_rss_mb(),
                      "rchar_gb": (after["rchar"] - before["rchar"]) / GB,
                      "read_bytes_gb": (after["read_bytes"] - before["read_bytes"]) / GB}))


def measure(variant: str, feature_path: Path, trials_path: Path, out_path: Path, components: int) -> dict:
    drop_from_page_cache(feature_path)
    out = subprocess.run([sys.executable, __file__, "--child", variant, str(feature_path), str(trials_path),
                          str(out_path), str(components)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{variant} at {feature_path} failed ({out.returncode}): {out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(variant, feature_path.name, result, flush=True)
    return result


def compare(baseline_path: Path, streamed_path: Path) -> dict:
    """Agreement of the two PCAs' scores, per component after matching signs (the sign rules differ)."""
    import h5py

    with h5py.File(baseline_path, "r") as a, h5py.File(streamed_path, "r") as b:
        old = {name: a[name][()] for name in ("train", "test", "explained_variance_ratio")}
        new = {name: b[name][()] for name in ("train", "test", "explained_variance_ratio")}
    signs = np.sign(np.einsum("ij,ij->j", old["train"], new["train"]))
    scale = np.abs(new["train"]).max(axis=0)  # per component
    error = {split: np.abs(old[split] * signs - new[split]).max(axis=0) / scale for split in ("train", "test")}
    corr = np.array([np.corrcoef(old["test"][:, j], new["test"][:, j])[0, 1] * signs[j]
                     for j in range(new["test"].shape[1])])
    out = {"variance_ratio_max_rel_diff": float(np.max(np.abs(old["explained_variance_ratio"]
                                                              / new["explained_variance_ratio"] - 1)))}
    for first in (100, 1000, len(signs)):
        out[f"first_{first}"] = {f"{split}_max_rel_diff": float(error[split][:first].max()) for split in error}
        out[f"first_{first}"]["test_min_corr"] = float(corr[:first].min())
    return out


def _fit(dims, values, at):
    """Linear fit through the measured points, evaluated at ``at``."""
    slope, intercept = np.polyfit(np.asarray(dims, float), np.asarray(values, float), 1)
    return float(intercept + slope * at), float(slope), float(intercept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[65536, 262144], help="d of the streamed runs")
    parser.add_argument("--baseline-dim", type=int, default=65536, help="d of the in-memory run (one of --dims)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--workdir", default=None, help="folder for the generated files (deleted at the end)")
    parser.add_argument("--n-train", type=int, default=N_TRAIN)
    parser.add_argument("--n-test", type=int, default=N_TEST)
    parser.add_argument("--components", type=int, default=COMPONENTS)
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    dims = sorted(set(args.dims))
    if args.baseline_dim not in dims:
        parser.error("--baseline-dim must be one of --dims (the streamed run at that d is compared with it)")
    folder = Path(tempfile.mkdtemp(prefix="bench_pca_", dir=args.workdir))
    n = args.n_train + args.n_test
    need = sum(n * d * 4 for d in dims) * 1.05 + 2 * GB
    free = shutil.disk_usage(folder).free
    paper_bytes = n * PAPER_DIM * 4
    print(f"free disk {free / GB:.0f} GB; files of the run {need / GB:.0f} GB; "
          f"the paper's size would be {paper_bytes / GB:.0f} GB", flush=True)
    if need > free:
        raise SystemExit(f"not enough disk in {folder}: {free / GB:.0f} GB free, {need / GB:.0f} GB needed")
    started = time.perf_counter()
    runs = {}
    try:
        for d in dims:
            path, trials = folder / f"features_{d}.h5", folder / f"trials_{d}.tsv"
            t0 = time.perf_counter()
            make_feature_file(path, n, d)
            write_trials(trials, path, args.n_test)
            print(f"wrote {path.name} ({path.stat().st_size / GB:.1f} GB) in {time.perf_counter() - t0:.0f} s",
                  flush=True)
            variants = ["streamed", "in-memory"] if d == args.baseline_dim else ["streamed"]
            for repeat in range(args.repeats):
                for variant in (variants if repeat % 2 == 0 else variants[::-1]):
                    result = measure(variant, path, trials, folder / f"{variant}_{d}.h5", args.components)
                    runs.setdefault((variant, d), []).append(result)
            if d == args.baseline_dim:
                agreement = compare(folder / f"in-memory_{d}.h5", folder / f"streamed_{d}.h5")
                print(agreement, flush=True)
            for variant in variants:
                (folder / f"{variant}_{d}.h5").unlink()
            path.unlink()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    total_s = time.perf_counter() - started
    medians = {key: {name: statistics.median(r[name] for r in values) for name in values[0]}
               for key, values in runs.items()}
    write_results(args, dims, medians, agreement, total_s)


def write_results(args, dims, medians, agreement, total_s) -> None:
    machine = describe()
    n = args.n_train + args.n_test
    streamed = {d: medians[("streamed", d)] for d in dims}
    base = medians[("in-memory", args.baseline_dim)]
    paper = {name: _fit(dims, [streamed[d][name] for d in dims], PAPER_DIM)
             for name in ("wall_s", "cpu_s", "rchar_gb", "read_bytes_gb")} if len(dims) > 1 else None
    # memory: once d spans several blocks, only the mean (float32) grows with d
    top = max(dims)
    paper_rss_mb = streamed[top]["peak_rss_mb"] + 4 * (PAPER_DIM - top) / 2**20
    # the old way's arrays at the paper's d: the training rows, the test rows, the components (float32)
    old_paper_gb = (n + args.components) * PAPER_DIM * 4 / GB
    command = " ".join(["nice -n 10 .venv/bin/python", "bench/pca_streaming.py", *sys.argv[1:]])
    runs = f"median of {args.repeats} runs" if args.repeats > 1 else "one run each"
    lines = [
        "# Streamed PCA vs the in-memory PCA",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores (shared with other work), Python {machine['python']}; "
        f"run niced. Command: `{command}` ({total_s / 60:.0f} min in all).",
        "",
        f"One subject: {args.n_train:,} training + {args.n_test:,} test images (interleaved in id order), "
        f"{args.components:,} components; HDF5 float32 features chunked as the merged feature files "
        "(64 rows x 16,384 columns), random values; the file's pages dropped from the page cache before each run. "
        f"Each run in its own process, {runs}. d is a fraction of the paper's {PAPER_DIM:,} (see below).",
        "",
        "| variant | d | file GB | wall s | CPU s | cores busy | peak RSS MB | read GB (rchar) | from disk GB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (variant, d), m in sorted(medians.items(), key=lambda item: (item[0][1], item[0][0])):
        lines.append(f"| {variant} | {d:,} | {n * d * 4 / GB:.1f} | {m['wall_s']:.0f} | {m['cpu_s']:.0f} | "
                     f"{m['cpu_s'] / m['wall_s']:.2f} | {m['peak_rss_mb']:,.0f} | {m['rchar_gb']:.1f} | {m['read_bytes_gb']:.1f} |")
    if paper:
        lines.append(f"| streamed, extrapolated | {PAPER_DIM:,} | {n * PAPER_DIM * 4 / GB:.1f} | "
                     f"{paper['wall_s'][0]:.0f} | {paper['cpu_s'][0]:.0f} | - | {paper_rss_mb:,.0f} | "
                     f"{paper['rchar_gb'][0]:.1f} | {paper['read_bytes_gb'][0]:.1f} |")
        rss = [streamed[d]["peak_rss_mb"] for d in dims]
        target = "under" if paper_rss_mb < 16 * 1024 else "over"
        lines += [
            "",
            f"Extrapolated to the paper's d = {PAPER_DIM:,}, not measured (a run at that d would take the time "
            f"above on this machine, more than this benchmark's budget). Time and bytes: a linear fit in d through "
            f"the {len(dims)} streamed points; wall time = {paper['wall_s'][2]:.0f} s + "
            f"{paper['wall_s'][1] * 65536:.1f} s per 65,536 dimensions (the constant: the eigendecomposition of "
            f"the {args.n_train:,}² Gram and the scores; the slope: reading and the Gram), CPU time = "
            f"{paper['cpu_s'][2]:.0f} s + {paper['cpu_s'][1] * 65536:.1f} s per 65,536 dimensions. The wall times "
            "depend on the machine's other work (cores busy: CPU s / wall s of the run, out of "
            f"{machine['cores']}): the CPU-time fit is the steadier one; {paper['cpu_s'][0]:.0f} CPU s are "
            f"{paper['cpu_s'][0] / max(machine['cores'], 1) / 60:.0f} min on {machine['cores']} free cores. "
            "Peak RSS: the largest "
            f"run's plus the mean's 4 bytes a dimension (the Gram, the cross Gram, the eigendecomposition and the "
            f"column block do not grow with d; measured {' / '.join(f'{r:,.0f}' for r in rss)} MB at d = "
            f"{' / '.join(f'{d:,}' for d in dims)}): {paper_rss_mb / 1024:.1f} GB, {target} the 16 GB target.",
        ]
    lines += [
        "",
        f"In-memory (the code before) at d = {args.baseline_dim:,}: {base['peak_rss_mb']:,.0f} MB peak RSS, "
        f"{base['wall_s']:.0f} s; streamed {streamed[args.baseline_dim]['peak_rss_mb']:,.0f} MB, "
        f"{streamed[args.baseline_dim]['wall_s']:.0f} s. At the paper's d the code before holds the training and "
        f"test rows and the components: {old_paper_gb:.0f} GB of float32 before any workspace.",
        "",
        f"Same scores at d = {args.baseline_dim:,}: per component, after matching signs (the sign rules differ: "
        "largest loading before, largest training score now), the largest difference relative to the "
        "component's largest training score, and the correlation of the test scores:",
        "",
        "| components | train max rel. diff | test max rel. diff | test 1 - min correlation |",
        "|---|---|---|---|",
    ]
    for key, row in agreement.items():
        if key.startswith("first_"):
            lines.append(f"| first {int(key[6:]):,} | {row['train_max_rel_diff']:.1e} | "
                         f"{row['test_max_rel_diff']:.1e} | {1 - row['test_min_corr']:.1e} |")
    lines += ["", f"Explained variance ratios: max relative difference {agreement['variance_ratio_max_rel_diff']:.1e}."]
    out = REPO / "bench" / "results" / "pca_streaming.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
