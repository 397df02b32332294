"""Trial tables and the train/test split agree with the design files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from brainldm.nsd import design, layout
from brainldm.nsd.design import NSDInputError
from brainldm.nsd.ingest import subject_trials, write_split
from brainldm.nsd.layout import NSD_SUBJECTS
from brainldm.synthetic import SyntheticDesign


@pytest.fixture(scope="module")
def split(synthetic_tree, small_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("split")
    subjects = small_config["subjects"]
    paths = {s: out / f"{s}.tsv" for s in subjects}
    write_split(synthetic_tree["root"], subjects, small_config["ingestion"], paths, out / "test.tsv")
    return {s: pd.read_csv(p, sep="\t") for s, p in paths.items()}, pd.read_csv(out / "test.tsv", sep="\t")


def test_counts_match_the_design_files(split, synthetic_tree, small_config):
    """Recount train and test trials from the csv rep columns alone."""
    tables, test = split
    d = SyntheticDesign.from_config(small_config["synthetic"])
    info = pd.read_csv(layout.stim_info(synthetic_tree["root"]), index_col=0)
    released = d.sessions_released * d.trials_per_session  # trials with betas on disk
    seen = {}
    for subject in small_config["subjects"]:
        k = NSD_SUBJECTS.index(subject) + 1
        reps = info[[f"subject{k}_rep{r}" for r in range(3)]].to_numpy()
        seen[subject] = ((reps > 0) & (reps <= released)).sum(axis=1)
    expected_test = np.flatnonzero(info["shared1000"].to_numpy() & np.all([s > 0 for s in seen.values()], axis=0))
    np.testing.assert_array_equal(test["nsd_id"], expected_test)
    for subject, table in tables.items():
        assert len(table) == released
        n_test = int(seen[subject][expected_test].sum())
        assert (table["split"] == "test").sum() == n_test
        assert (table["split"] == "train").sum() == released - n_test
        np.testing.assert_array_equal(test[f"{subject}_repetitions"], seen[subject][expected_test])
        # 0-based ids throughout
        assert table["nsd_id"].min() >= 0 and table["nsd_id"].max() < len(info)


def test_trial_in_session_indexes_the_betas_rows(split, small_config):
    tables, _ = split
    d = SyntheticDesign.from_config(small_config["synthetic"])
    for table in tables.values():
        for _, session in table.groupby("session"):
            np.testing.assert_array_equal(session["trial_in_session"], np.arange(d.trials_per_session))


def test_missing_session_is_an_error_or_skipped(synthetic_tree, small_config, tmp_path):
    root = synthetic_tree["root"]
    subject = small_config["subjects"][0]
    on_disk = {1: "a", 2: "b"}
    with pytest.raises(NSDInputError, match=r"betas missing for sessions \[3\]"):
        design.select_sessions([1, 2, 3], on_disk, "all", "error", where="somewhere")
    assert design.select_sessions([1, 2, 3], on_disk, "all", "skip") == [1, 2]
    assert design.select_sessions([1, 2, 3], on_disk, [2], "error") == [2]
    with pytest.raises(NSDInputError, match=r"\[7\] requested but absent"):
        design.select_sessions([1, 2, 3], on_disk, [7], "error")
    table, files = subject_trials(root, subject, small_config["ingestion"])
    assert sorted(files) == sorted(table["session"].unique())


def test_subject_not_in_design_file(synthetic_tree):
    expdesign = design.read_expdesign(layout.expdesign(synthetic_tree["root"]))
    truncated = {**expdesign, "subjectim": expdesign["subjectim"][:2]}
    with pytest.raises(NSDInputError, match="subj05.*not in the design file.*2 rows"):
        design.subject_images(truncated, "subj05", path="nsd_expdesign.mat")


def test_responses_inconsistent_with_design(synthetic_tree, small_config):
    subject = small_config["subjects"][0]
    expdesign = design.read_expdesign(layout.expdesign(synthetic_tree["root"]))
    responses = design.read_responses(layout.responses(synthetic_tree["root"], subject))
    responses.loc[3, "73KID"] += 1
    with pytest.raises(NSDInputError, match="73KID disagrees.*row 3"):
        design.trial_table(expdesign, responses, subject, [1, 2])


def test_missing_design_file_names_it(tmp_path):
    with pytest.raises(NSDInputError, match="nsd_expdesign.mat: design file not found"):
        design.read_expdesign(tmp_path / "nsd_expdesign.mat")
