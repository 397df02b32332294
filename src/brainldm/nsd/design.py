"""Trials and the train/test split, from ``nsd_expdesign.mat`` and ``responses.tsv``.

Conventions: ``nsd_id`` is the 0-based 73k id (row of ``imgBrick`` and of
``nsd_stim_info_merged.csv``); NSD's own files are 1-based and are converted
here, once. Sessions, runs and trials keep NSD's 1-based numbering.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd
import scipy.io

from ..errors import NSDInputError
from .layout import NSD_SUBJECTS

EXPDESIGN_KEYS = ("masterordering", "subjectim", "sharedix")
RESPONSE_COLUMNS = ("SESSION", "RUN", "TRIAL", "73KID", "10KID")

log = logging.getLogger(__name__)


def read_expdesign(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load ``nsd_expdesign.mat`` as integer arrays (still 1-based).

    Returns
    -------
    dict
        ``masterordering`` (n_trials,), ``subjectim`` (n_subjects, n_images),
        ``sharedix`` (n_shared,).
    """
    if not os.path.exists(path):
        raise NSDInputError(f"{path}: design file not found (expected NSD's nsd_expdesign.mat)")
    try:
        mat = scipy.io.loadmat(path)
    except Exception as exc:  # scipy raises several types for corrupt files
        raise NSDInputError(f"{path}: not a readable MATLAB file ({exc})") from exc
    missing = [key for key in EXPDESIGN_KEYS if key not in mat]
    if missing:
        raise NSDInputError(f"{path}: expected variables {list(EXPDESIGN_KEYS)}, missing {missing}")
    return {
        "masterordering": np.asarray(mat["masterordering"]).ravel().astype(np.int64),
        "subjectim": np.atleast_2d(np.asarray(mat["subjectim"])).astype(np.int64),
        "sharedix": np.asarray(mat["sharedix"]).ravel().astype(np.int64),
    }


def subject_images(expdesign: dict, subject: str, path="nsd_expdesign.mat") -> np.ndarray:
    """0-based 73k ids of a subject's image list (its 10k list, in order)."""
    if subject not in NSD_SUBJECTS:
        raise NSDInputError(f"subject must be one of {NSD_SUBJECTS}, found {subject!r}")
    row = NSD_SUBJECTS.index(subject)
    n_rows = expdesign["subjectim"].shape[0]
    if row >= n_rows:
        raise NSDInputError(f"{path}: subject {subject!r} not in the design file (subjectim has {n_rows} rows)")
    return expdesign["subjectim"][row] - 1


def read_responses(path: str | os.PathLike) -> pd.DataFrame:
    """Load a subject's ``responses.tsv`` and check the columns this pipeline uses."""
    if not os.path.exists(path):
        raise NSDInputError(f"{path}: responses file not found (expected NSD's behav/responses.tsv)")
    table = pd.read_csv(path, sep="\t")
    missing = [c for c in RESPONSE_COLUMNS if c not in table.columns]
    if missing:
        raise NSDInputError(f"{path}: expected columns {list(RESPONSE_COLUMNS)}, missing {missing}")
    return table


def trial_table(
    expdesign: dict,
    responses: pd.DataFrame,
    subject: str,
    sessions,
    responses_path="responses.tsv",
    expdesign_path="nsd_expdesign.mat",
) -> pd.DataFrame:
    """One row per trial of the used sessions, in acquisition order.

    Parameters
    ----------
    expdesign : dict
        From :func:`read_expdesign`.
    responses : pandas.DataFrame
        From :func:`read_responses`.
    subject : str
        ``subjXX``.
    sessions : sequence of int
        1-based sessions to keep.
    responses_path, expdesign_path : str
        Named in error messages.

    Returns
    -------
    pandas.DataFrame
        Columns ``session``, ``run``, ``trial`` (1-based, within the run),
        ``trial_in_session`` (0-based row of the session's betas file),
        ``nsd_id`` (0-based 73k id), ``index_10k`` (1-based, NSD's) and
        ``shared`` (one of NSD's shared images).
    """
    images = subject_images(expdesign, subject, expdesign_path)
    shared = set(expdesign["sharedix"] - 1)
    table = responses.loc[responses["SESSION"].isin(list(sessions)), list(RESPONSE_COLUMNS)].copy()
    table = table.sort_values(["SESSION", "RUN", "TRIAL"], kind="stable")
    index10k = table["10KID"].to_numpy()
    if index10k.min(initial=1) < 1 or index10k.max(initial=1) > len(images):
        raise NSDInputError(
            f"{responses_path}: 10KID must be in [1, {len(images)}] (the subject's image list), "
            f"found [{index10k.min()}, {index10k.max()}]"
        )
    expected = images[index10k - 1]
    found = table["73KID"].to_numpy() - 1
    if not np.array_equal(expected, found):
        bad = int(np.flatnonzero(expected != found)[0])
        raise NSDInputError(
            f"{responses_path}: 73KID disagrees with nsd_expdesign.mat subjectim for {subject} at row "
            f"{bad}: expected {expected[bad] + 1}, found {found[bad] + 1}"
        )
    return pd.DataFrame({
        "session": table["SESSION"].to_numpy(),
        "run": table["RUN"].to_numpy(),
        "trial": table["TRIAL"].to_numpy(),
        "trial_in_session": table.groupby("SESSION").cumcount().to_numpy(),
        "nsd_id": found,
        "index_10k": index10k,
        "shared": np.isin(found, list(shared)),
    })


#: NSD released the last 3 of its 40 design sessions only in 2023 (NSD manual, General Information);
#: the paper and its peers (Brain-Diffuser, MindEye) used sessions 1-37.
SESSIONS_RELEASED_IN_2023 = 3


def design_sessions(expdesign: dict, responses: pd.DataFrame) -> int:
    """Sessions of NSD's design: trials of ``masterordering`` over trials per session (40 in NSD)."""
    per_session = int(responses.groupby("SESSION").size().max())
    return len(expdesign["masterordering"]) // per_session


def paper_sessions(expdesign: dict, responses: pd.DataFrame) -> list[int]:
    """Sessions of ``ingestion.sessions: paper``: those public when the paper was written (1-37 in NSD)."""
    return list(range(1, max(1, design_sessions(expdesign, responses) - SESSIONS_RELEASED_IN_2023) + 1))


def sessions_for_subject(requested, subject: str):
    """The ``ingestion.sessions`` value for one subject (a per-subject mapping falls back to ``paper``)."""
    if isinstance(requested, dict):
        return requested.get(subject, "paper")
    return requested


def format_sessions(sessions) -> str:
    """``1-37`` or ``1-3, 5`` for a list of session numbers."""
    sessions, parts, start = sorted(int(s) for s in sessions), [], None
    for k, s in enumerate(sessions):
        if start is None:
            start = s
        if k + 1 == len(sessions) or sessions[k + 1] != s + 1:
            parts.append(f"{start}-{s}" if s > start else f"{s}")
            start = None
    return ", ".join(parts) or "none"


def select_sessions(in_responses, on_disk, requested="all", missing="error", where="", paper=None,
                    subject="") -> list[int]:
    """The sessions to use.

    Parameters
    ----------
    in_responses : iterable of int
        Sessions with trials in ``responses.tsv``.
    on_disk : iterable of int
        Sessions whose betas file exists.
    requested : "paper", "all" or list of int
        ``"paper"``: the sessions of ``paper`` that the subject has (a subject with fewer
        sessions, e.g. NSD's subj03 with 32, uses all of its own, with a warning);
        ``"all"``: every session of ``responses.tsv``; a list: exactly those sessions.
    missing : {"error", "skip"}
        What to do with a requested session that has no betas file.
    where : str
        Folder named in error messages.
    paper : list of int, optional
        The paper's sessions (:func:`paper_sessions`); needed for ``"paper"``.
    subject : str
        Named in messages.
    """
    in_responses, on_disk = sorted({int(s) for s in in_responses}), {int(s) for s in on_disk}
    if requested == "paper":
        if paper is None:
            raise ValueError("select_sessions: 'paper' needs the paper's sessions (paper_sessions)")
        wanted = [s for s in paper if s in in_responses]
        if len(wanted) < len(paper):
            log.warning("%s has sessions %s in responses.tsv, fewer than the paper's %s: using %s",
                        subject, format_sessions(in_responses), format_sessions(paper), format_sessions(wanted))
    elif requested == "all":
        wanted = in_responses
    else:
        wanted = sorted({int(s) for s in requested})
    unknown = [s for s in wanted if s not in in_responses]
    if unknown:
        raise NSDInputError(
            f"{subject}: ingestion.sessions asks for sessions {format_sessions(unknown)}, but its responses.tsv "
            f"has sessions {format_sessions(in_responses)} (NSD's subj03/04/06/08 completed 32/30/32/30); "
            "use 'paper', 'all' or a per-subject list"
        )
    absent = [s for s in wanted if s not in on_disk]
    if absent and missing == "error":
        raise NSDInputError(
            f"{where}: betas missing for sessions {absent} (expected betas_sessionNN.hdf5 or .nii.gz); "
            "set ingestion.missing_sessions: skip to leave them out"
        )
    used = [s for s in wanted if s in on_disk]
    if not used:
        raise NSDInputError(f"{where}: no betas found for any of sessions {wanted}")
    return used


def test_images(tables: dict[str, pd.DataFrame]) -> np.ndarray:
    """Shared images seen by every subject within its used sessions (sorted 0-based ids)."""
    seen = [set(t.loc[t["shared"], "nsd_id"]) for t in tables.values()]
    return np.array(sorted(set.intersection(*seen)), dtype=np.int64)


def assign_split(table: pd.DataFrame, test_ids) -> pd.DataFrame:
    """Add ``split``: ``test`` for trials of a test image, ``train`` for all others."""
    out = table.copy()
    out["split"] = np.where(np.isin(out["nsd_id"], np.asarray(test_ids)), "test", "train")
    return out
