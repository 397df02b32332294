"""Job benchmark summaries read Snakemake's benchmark files."""

from __future__ import annotations

import csv

import pytest

from brainldm.jobstats import read_benchmark, summarize_job_benchmarks

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def test_summary_has_one_row_per_job_longest_first(tmp_path):
    bench = tmp_path / "benchmarks"
    (bench / "encoding" / "encode_feature").mkdir(parents=True)
    (bench / "features").mkdir(parents=True)
    (bench / "encoding" / "encode_feature" / "subj01_z.tsv").write_text(
        HEADER + "2.5\t0:00:02\t400.1\t1\t1\t1\t0\t0\t50\t2.0\n")
    (bench / "features" / "extract_features.tsv").write_text(
        HEADER + "30\t0:00:30\t900\t1\t1\t1\t0\t0\t90\t55\n" + "10\t0:00:10\t800\t1\t1\t1\t0\t0\t90\t20\n"
        + "20\t0:00:20\t850\t1\t1\t1\t0\t0\t90\tNA\n")
    out = tmp_path / "summary.tsv"
    summarize_job_benchmarks(bench, out)
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert [(r["stage"], r["rule"], r["job"]) for r in rows] == [
        ("features", "extract_features", ""), ("encoding", "encode_feature", "subj01_z")]
    assert rows[0]["wall_s"] == "20.00" and rows[0]["max_rss_mb"] == "850.00"  # medians of the repeats
    assert rows[0]["cpu_s"] == "55.00"  # median of the values present


def test_empty_benchmark_file_is_named(tmp_path):
    path = tmp_path / "x.tsv"
    path.write_text(HEADER)
    with pytest.raises(ValueError, match="x.tsv: benchmark file has no rows"):
        read_benchmark(path)
