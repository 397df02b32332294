"""Evaluation stage of the workflow: pooled tables and Figure 5 on the synthetic run."""

from __future__ import annotations

import pytest
from PIL import Image

from brainldm.evaluation import RANDOM_NOTICE
from brainldm.evaluation.protocols import COMMUNITY_READOUTS, PAPER_READOUTS
from brainldm.evaluation.tables import read_header, read_table

pytestmark = pytest.mark.workflow


def test_pooled_identification_table_and_plot(workflow_run, small_config):
    path = workflow_run / "results" / "evaluation" / "identification.tsv"
    header, table = read_header(path), read_table(path)
    assert RANDOM_NOTICE in header[-1] and any("ORIGINAL FIXED" in line for line in header)
    assert len(table) == 3 * len(PAPER_READOUTS)
    assert set(table["method"]) == {"Xz", "Xc", "Xzc"} and list(table["readout"][:7]) == [r.name for r in PAPER_READOUTS]
    assert (table["n_subjects"] == len(small_config["subjects"])).all()
    assert table["mean"].between(0, 1).all() and table["sem"].between(0, 0.5).all()
    for subject in small_config["subjects"]:
        assert table[subject].between(0, 1).all()
    with Image.open(workflow_run / "results" / "evaluation" / "identification.png") as plot:
        assert plot.width > 400 and plot.height > 200


def test_community_table(workflow_run, small_config):
    path = workflow_run / "results" / "evaluation" / "community.tsv"
    header, table = read_header(path), read_table(path)
    assert RANDOM_NOTICE in header[-1] and any("RECONSTRUCTION FIXED" in line for line in header)
    assert len(table) == 3 * (len(small_config["subjects"]) + 1)
    assert table["PixCorr"].between(-1, 1).all() and table["SSIM"].between(-1, 1).all()
    for readout in COMMUNITY_READOUTS:
        assert table[readout.name].between(0, 2).all(), readout.name


def test_per_subject_outputs(workflow_run, small_config):
    for subject in small_config["subjects"]:
        folder = workflow_run / "results" / subject / "evaluation"
        best = read_table(folder / "best_samples.tsv")
        assert best["best_sample"].between(0, small_config["reconstruction"]["n_samples"] - 1).all()
        assert (folder / "best_samples.png").stat().st_size > 5000
        assert (workflow_run / "logs" / "evaluation" / "evaluate_subject" / f"{subject}.log").stat().st_size > 0
        assert (workflow_run / "benchmarks" / "evaluation" / "evaluate_subject" / f"{subject}.tsv").is_file()
