"""`snakemake --report` gathers the run's figures and tables, each with its caption, in one HTML file."""

from __future__ import annotations

import pytest
import yaml

from conftest import REPO, run_snakemake

pytestmark = pytest.mark.workflow


def test_report_holds_figures_tables_and_captions(workflow_run, tmp_path):
    out = tmp_path / "report.html"
    result = run_snakemake(workflow_run, "--report", str(out))
    assert result.returncode == 0, result.stderr[-4000:]
    html = out.read_text(errors="replace")
    assert out.stat().st_size > 100_000  # images are embedded: one file to send around
    for name in ("contact_sheet.png", "figure6.png", "figure9.png", "roi_summary.tsv", "job_benchmarks.tsv"):
        assert name in html, name
    for caption in ("img2img from Xz with decoded c", "unique variance of z", "longest first"):
        assert caption in html, caption
    # the workflow description and the captions state the values the run used (tests/config/small.yaml)
    config = yaml.safe_load((REPO / "tests" / "config" / "small.yaml").read_text())
    assert f"for {', '.join(config['subjects'])} of the NSD tree" in html
    steps = config["reconstruction"]["num_inference_steps"]
    assert f"Reconstructed with {steps} steps" in html
