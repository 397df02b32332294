"""Evaluation tables: pooled means and SEM by hand, headers that name protocol, direction and weights."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from brainldm.config import section_defaults
from brainldm.evaluation.protocols import RANDOM_NOTICE
from brainldm.evaluation.tables import (
    community_header,
    paper_header,
    pooled_community,
    pooled_identification,
    read_header,
    read_table,
    write_table,
)

SETTINGS = {**section_defaults("evaluation"), "weights": "random"}


def _paper(accuracies: dict[str, list[float]]) -> pd.DataFrame:
    rows = [{"nsd_id": i, "method": method, "readout": "AlexNet early", "accuracy": a}
            for method, values in accuracies.items() for i, a in enumerate(values)]
    return pd.DataFrame(rows)


def test_pooled_identification_by_hand():
    per_subject = {"subj01": _paper({"Xz": [1.0, 0.5], "Xc": [0.5, 0.5]}),
                   "subj02": _paper({"Xz": [0.5, 0.5], "Xc": [1.0, 1.0]})}
    table = pooled_identification(per_subject).set_index("method")
    assert table.loc["Xz", "subj01"] == 0.75 and table.loc["Xz", "subj02"] == 0.5
    assert table.loc["Xz", "mean"] == pytest.approx(0.625)
    # SD of (0.75, 0.5) with ddof 1 is 0.25 / sqrt(2); SEM divides by sqrt(2) again
    assert table.loc["Xz", "sem"] == pytest.approx(0.125)
    assert table.loc["Xc", "n_subjects"] == 2 and table.loc["Xc", "n_images"] == 2


def test_one_subject_has_no_sem():
    table = pooled_identification({"subj01": _paper({"Xz": [1.0, 0.0]})})
    assert np.isnan(table["sem"].iloc[0]) and table["mean"].iloc[0] == 0.5


def test_pooled_community_means_over_images_samples_then_subjects():
    def one(pix):
        return pd.DataFrame({"nsd_id": [0, 0, 1, 1], "method": "Xc", "sample": [0, 1, 0, 1], "PixCorr": pix,
                             "SSIM": 0.5, "AlexNet(2)": 1.0, "AlexNet(5)": 1.0, "InceptionV3": 1.0, "CLIP": 1.0,
                             "EffNet-B": 0.1, "SwAV": 0.2})

    table = pooled_community({"subj01": one([0.1, 0.3, 0.5, 0.7]), "subj02": one([0.0, 0.0, 0.0, 0.4])})
    assert table["PixCorr"].tolist() == pytest.approx([0.4, 0.1, 0.25])
    assert table["subject"].tolist() == ["subj01", "subj02", "mean of 2"]


def test_headers_name_direction_sizes_and_weights():
    paper = paper_header("subj01", 5, SETTINGS)
    assert "ORIGINAL FIXED" in paper[1] and "averaged over the 5 samples" in paper[1]
    assert "AlexNet early = alexnet features.5 at 299x299" in paper[2] and paper[-1].startswith(RANDOM_NOTICE)
    community = community_header("pooled", {**SETTINGS, "weights": "pretrained"})
    assert "425x425" in community[1] and "RECONSTRUCTION FIXED" in community[2]
    assert "SwAV = swav avgpool at 224x224" in community[4] and RANDOM_NOTICE not in community[-1]
    scaled = community_header("pooled", {**SETTINGS, "image_scale": 0.5})
    assert "212x212" in scaled[1]  # round(425 * 0.5)


def test_tables_round_trip(tmp_path):
    table = pd.DataFrame({"method": ["Xz"], "accuracy": [0.75]})
    write_table(table, tmp_path / "t.tsv", ["first line", RANDOM_NOTICE])
    assert read_header(tmp_path / "t.tsv") == ["first line", RANDOM_NOTICE]
    pd.testing.assert_frame_equal(read_table(tmp_path / "t.tsv"), table)
