"""Summaries of Snakemake's per-job ``benchmark:`` files (wall time, memory, CPU time)."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

from .files import atomic_path

log = logging.getLogger(__name__)

__all__ = ["read_benchmark", "summarize_job_benchmarks"]

#: Columns of Snakemake's benchmark TSV kept in the summary.
COLUMNS = ("s", "max_rss", "cpu_time", "mean_load")


def read_benchmark(path) -> dict:
    """Median over repeats of the kept columns of one benchmark TSV (missing values as '')."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    if not rows:
        raise ValueError(f"{path}: benchmark file has no rows")
    out = {}
    for column in COLUMNS:
        values = sorted(float(row[column]) for row in rows if row.get(column) not in (None, "", "NA", "-"))
        out[column] = values[len(values) // 2] if values else ""
    return out


def summarize_job_benchmarks(benchmark_dir, out_tsv) -> None:
    """One row per job benchmark under ``benchmark_dir``: stage, rule, job, seconds, peak RSS, CPU time.

    ``benchmark_dir`` is laid out as the rules write it: ``<stage>/<rule>/<job>.tsv`` or
    ``<stage>/<rule>.tsv``. Rows are sorted by wall time, longest first.
    """
    root = Path(benchmark_dir)
    rows = []
    for path in sorted(root.rglob("*.tsv")) if root.is_dir() else []:
        parts = path.relative_to(root).with_suffix("").parts
        stage, rule, job = (parts + ("", "", ""))[:3] if len(parts) >= 3 else (parts[0], parts[-1], "")
        rows.append({"stage": stage, "rule": rule, "job": job, **read_benchmark(path)})
    rows.sort(key=lambda row: -(row["s"] or 0.0))
    with atomic_path(out_tsv) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["stage", "rule", "job", "wall_s", "max_rss_mb", "cpu_s", "mean_load"])
        for row in rows:
            writer.writerow([row["stage"], row["rule"], row["job"],
                             *(f"{row[c]:.2f}" if row[c] != "" else "" for c in COLUMNS)])
    log.info("%d job benchmarks from %s -> %s", len(rows), os.fspath(root), out_tsv)
