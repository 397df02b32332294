"""Trial tables and the train/test split agree with the design files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from brainldm.nsd import design, layout
from brainldm.nsd.design import NSDInputError
from brainldm.nsd.ingest import subject_trials, split_trials
from brainldm.nsd.layout import NSD_SUBJECTS
from brainldm.synthetic import SyntheticDesign


@pytest.fixture(scope="module")
def split(synthetic_tree, small_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("split")
    subjects = small_config["subjects"]
    paths = {s: out / f"{s}.tsv" for s in subjects}
    split_trials(synthetic_tree["root"], subjects, small_config["ingestion"], paths, out / "test.tsv")
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
    with pytest.raises(NSDInputError, match=r"subj03: ingestion.sessions asks for sessions 7, but its "
                                            r"responses.tsv has sessions 1-3"):
        design.select_sessions([1, 2, 3], on_disk, [7], "error", subject="subj03")
    table, files = subject_trials(root, subject, small_config["ingestion"])
    assert sorted(files) == sorted(table["session"].unique())


def test_subject_not_in_design_file(synthetic_tree):
    expdesign = design.read_expdesign(layout.expdesign(synthetic_tree["root"]))
    truncated = {**expdesign, "subjectim": expdesign["subjectim"][:2]}
    with pytest.raises(NSDInputError, match="subj05.*not in the design file.*2 rows"):
        design.subject_images(truncated, "subj05", path="nsd_expdesign.mat")
    responses = design.read_responses(layout.responses(synthetic_tree["root"], "subj01"))
    path = layout.expdesign(synthetic_tree["root"])
    with pytest.raises(NSDInputError, match=rf"^{path}: subject 'subj05' not in the design file"):
        design.trial_table(truncated, responses, "subj05", [1], expdesign_path=path)


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


# -- sessions as NSD is downloaded today: 40 design sessions, subjects with fewer -------------------

N_SESSIONS = 40


@pytest.fixture(scope="module")
def nsd_today(nsd_download):
    assert SyntheticDesign.from_config(nsd_download["synthetic"]).n_sessions == N_SESSIONS
    return nsd_download


def _split(tree, subjects, sessions, tmp_path):
    paths = {s: tmp_path / f"{s}.tsv" for s in subjects}
    ingestion = {"sessions": sessions, "missing_sessions": "error", "betas_format": "auto"}
    split_trials(tree["root"], subjects, ingestion, paths, tmp_path / "test.tsv", tmp_path / "summary.tsv")
    return ({s: pd.read_csv(p, sep="\t") for s, p in paths.items()},
            pd.read_csv(tmp_path / "summary.tsv", sep="\t").set_index("subject"))


def _expected_split(tree, subject, sessions, test_ids):
    """Train/test counts recounted from nsd_stim_info_merged.csv's rep columns (1-based trial positions)."""
    info = pd.read_csv(layout.stim_info(tree["root"]), index_col=0)
    k = NSD_SUBJECTS.index(subject) + 1
    reps = info[[f"subject{k}_rep{r}" for r in range(3)]].to_numpy()  # 0: not shown
    per_session = len(design.read_expdesign(layout.expdesign(tree["root"]))["masterordering"]) // N_SESSIONS
    session_of = (reps - 1) // per_session + 1
    used = (reps > 0) & np.isin(session_of, sessions)
    trials = used.sum(axis=1)
    is_test = np.isin(np.arange(len(info)), test_ids)
    return {"train_trials": int(trials[~is_test].sum()), "train_images": int((trials[~is_test] > 0).sum()),
            "test_trials": int(trials[is_test].sum()), "test_images": int((trials[is_test] > 0).sum())}


def test_paper_sessions_are_1_to_37_of_nsds_40(nsd_today, tmp_path):
    tables, summary = _split(nsd_today, ["subj01"], "paper", tmp_path)
    table = tables["subj01"]
    assert sorted(table["session"].unique()) == list(range(1, 38))
    assert summary.loc["subj01", "sessions"] == "1-37"
    test_ids = np.unique(table.loc[table["split"] == "test", "nsd_id"])
    expected = _expected_split(nsd_today, "subj01", range(1, 38), test_ids)
    for column, value in expected.items():
        assert summary.loc["subj01", column] == value, column
    assert summary.loc["subj01", "shared_images_in_train"] == 0


def test_all_sessions_uses_every_released_session(nsd_today, tmp_path):
    tables, summary = _split(nsd_today, ["subj01"], "all", tmp_path)
    assert sorted(tables["subj01"]["session"].unique()) == list(range(1, N_SESSIONS + 1))
    assert summary.loc["subj01", "train_trials"] + summary.loc["subj01", "test_trials"] == 2 * N_SESSIONS


def test_per_subject_sessions(nsd_today, tmp_path):
    tables, summary = _split(nsd_today, ["subj01", "subj03"], {"subj01": [1, 2, 3]}, tmp_path)
    assert sorted(tables["subj01"]["session"].unique()) == [1, 2, 3]
    assert summary.loc["subj03", "sessions"] == "1-32"  # paper, cut to the 32 it has


def test_subject_with_fewer_sessions_is_warned_about(nsd_today, tmp_path, caplog):
    """subj03 has 32 sessions: the common test set shrinks and subj01's other shared images train, said loudly."""
    caplog.set_level("WARNING")
    tables, summary = _split(nsd_today, ["subj01", "subj03"], "paper", tmp_path)
    assert summary.loc["subj03", "n_sessions"] == 32
    alone = _split(nsd_today, ["subj01"], "paper", tmp_path / "alone")[1]
    assert summary.loc["subj01", "test_images"] < alone.loc["subj01", "test_images"]
    moved = summary.loc["subj01", "shared_images_in_train"]
    assert moved == alone.loc["subj01", "test_images"] - summary.loc["subj01", "test_images"] > 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("subj03 has sessions 1-32" in w and "fewer than the paper's 1-37" in w for w in warnings)
    assert any(w.startswith("subj01 saw") and f"{moved} of its shared images are training images" in w
               for w in warnings)


def test_explicit_sessions_a_subject_lacks_name_it(nsd_today, tmp_path):
    with pytest.raises(NSDInputError, match=r"subj03: ingestion.sessions asks for sessions 33-37, but its "
                                            r"responses.tsv has sessions 1-32"):
        _split(nsd_today, ["subj03"], list(range(1, 38)), tmp_path)
