"""The pooled stage: tables and Figure 5 from per-subject tables; subjects that disagree stop it."""

from __future__ import annotations

import pandas as pd
import pytest

from brainldm.config import section_defaults
from brainldm.evaluation import RANDOM_NOTICE, evaluate_pooled
from brainldm.evaluation.protocols import COMMUNITY_READOUTS, PAPER_READOUTS
from brainldm.evaluation.tables import paper_header, read_header, read_table, write_table

SETTINGS = {**section_defaults("evaluation"), "weights": "random"}


def _subject(folder, subject, n_images, rng):
    paper = pd.DataFrame([{"nsd_id": i, "method": m, "readout": r.name, "accuracy": rng.uniform()}
                          for m in ("Xz", "Xc", "Xzc") for r in PAPER_READOUTS for i in range(n_images)])
    community = pd.DataFrame([{"nsd_id": i, "method": m, "sample": 0, "PixCorr": 0.1, "SSIM": 0.2,
                               **{r.name: rng.uniform() for r in COMMUNITY_READOUTS}}
                              for m in ("Xz", "Xc", "Xzc") for i in range(n_images)])
    paths = folder / f"{subject}_paper.tsv", folder / f"{subject}_community.tsv"
    write_table(paper, paths[0], paper_header(subject, 2, SETTINGS))
    write_table(community, paths[1], ["community"])
    return paths


def _outputs(folder):
    return {"identification_path": folder / "id.tsv", "plot_path": folder / "id.png",
            "community_path": folder / "community.tsv"}


def test_pooled_outputs(tmp_path, rng):
    paths = [_subject(tmp_path, s, 6, rng) for s in ("subj01", "subj02")]
    out = _outputs(tmp_path)
    evaluate_pooled(["subj01", "subj02"], [p[0] for p in paths], [p[1] for p in paths], 2, SETTINGS, **out)
    table = read_table(out["identification_path"])
    assert len(table) == 3 * len(PAPER_READOUTS) and (table["n_subjects"] == 2).all()
    assert table["sem"].notna().all() and table["mean"].between(0, 1).all()
    assert read_header(out["identification_path"])[-1].startswith(RANDOM_NOTICE)
    assert RANDOM_NOTICE in read_header(out["community_path"])[-1]
    assert read_table(out["community_path"])["subject"].tolist()[-3:] == ["mean of 2"] * 3
    assert out["plot_path"].stat().st_size > 10000


def test_subjects_on_different_test_sets_stop(tmp_path, rng):
    paths = [_subject(tmp_path, "subj01", 6, rng), _subject(tmp_path, "subj02", 5, rng)]
    with pytest.raises(ValueError, match="different numbers of test images"):
        evaluate_pooled(["subj01", "subj02"], [p[0] for p in paths], [p[1] for p in paths], 2, SETTINGS,
                        **_outputs(tmp_path))
