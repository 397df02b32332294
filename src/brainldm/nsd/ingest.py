"""The ingestion stage: one function per workflow rule."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pandas as pd

from ..files import atomic_path
from . import betas as betas_mod
from . import design, layout

log = logging.getLogger(__name__)


def _provenance(**values) -> dict:
    from .. import __version__

    return {"brainldm_version": __version__, **{k: json.dumps(v, sort_keys=True, default=str) for k, v in values.items()}}


def subject_trials(root, subject: str, ingestion: dict) -> tuple[pd.DataFrame, dict[int, str]]:
    """A subject's trials in the used sessions, and the betas file of each session."""
    expdesign = design.read_expdesign(layout.expdesign(root))
    responses = design.read_responses(layout.responses(root, subject))
    betas_dir = layout.betas_dir(root, subject)
    on_disk = betas_mod.sessions_on_disk(betas_dir, ingestion["betas_format"])
    sessions = design.select_sessions(
        responses["SESSION"].unique(), on_disk, design.sessions_for_subject(ingestion["sessions"], subject),
        ingestion["missing_sessions"], where=betas_dir, paper=design.paper_sessions(expdesign, responses),
        subject=subject,
    )
    table = design.trial_table(expdesign, responses, subject, sessions, layout.responses(root, subject),
                               layout.expdesign(root))
    return table, {s: on_disk[s] for s in sessions}


def split_summary(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per subject: sessions used, train and test trials and images, shared images seen and trained on.

    Paper, subj01 at sessions 1-37: 24,980 train trials of 8,859 images, 2,770 test trials of 982 images.
    """
    rows = []
    for subject, table in tables.items():
        train, test = table[table["split"] == "train"], table[table["split"] == "test"]
        rows.append({
            "subject": subject,
            "sessions": design.format_sessions(table["session"].unique()),
            "n_sessions": int(table["session"].nunique()),
            "train_trials": len(train), "train_images": int(train["nsd_id"].nunique()),
            "test_trials": len(test), "test_images": int(test["nsd_id"].nunique()),
            "shared_images_seen": int(table.loc[table["shared"], "nsd_id"].nunique()),
            "shared_images_in_train": int(train.loc[train["shared"], "nsd_id"].nunique()),
        })
    return pd.DataFrame(rows)


def split_trials(root, subjects: list[str], ingestion: dict, trials_paths: dict[str, str], test_path: str,
                summary_path: str | None = None) -> None:
    """Trial tables with their split for every subject, the shared test set and a summary table.

    The test set is the shared images seen by every configured subject within its used
    sessions (the paper's four subjects at sessions 1-37 all saw the same 982), so pooled
    scores compare the same images; all other trials are training trials. A subject whose
    own shared set is larger (another subject has fewer sessions) is warned about: its
    other shared images become training images.
    """
    tables = {subject: subject_trials(root, subject, ingestion)[0] for subject in subjects}
    test_ids = design.test_images(tables)
    if len(test_ids) == 0:
        raise design.NSDInputError(f"no shared image was seen by all of {subjects} in the used sessions")
    tables = {subject: design.assign_split(table, test_ids) for subject, table in tables.items()}
    for subject, table in tables.items():
        with atomic_path(trials_paths[subject]) as tmp:
            table.to_csv(tmp, sep="\t", index=False)
    summary = split_summary(tables)
    log.info("train/test split (test: shared images seen by every subject):\n%s", summary.to_string(index=False))
    for row in summary.itertuples():
        if row.shared_images_in_train:
            log.warning(
                "%s saw %d shared images but the common test set has %d (another subject has fewer sessions): "
                "%d of its shared images are training images; its results are not comparable to the paper's "
                "(drop the subject with fewer sessions, or analyse it in a run of its own)",
                row.subject, row.shared_images_seen, len(test_ids), row.shared_images_in_train)
    if summary_path is not None:
        with atomic_path(summary_path) as tmp:
            summary.to_csv(tmp, sep="\t", index=False)
    counts = pd.DataFrame({"nsd_id": test_ids})
    for subject, table in tables.items():
        reps = table[table["nsd_id"].isin(test_ids)].groupby("nsd_id").size()
        counts[f"{subject}_repetitions"] = reps.reindex(test_ids).to_numpy()
    with atomic_path(test_path) as tmp:
        counts.to_csv(tmp, sep="\t", index=False)


def extract_roi_betas(root, subject: str, trials_path: str, ingestion: dict, rois: dict, out_paths: dict[str, str]) -> None:
    """Train and test betas of each configured ROI of one subject (see :mod:`brainldm.nsd.betas`)."""
    trials = pd.read_csv(trials_path, sep="\t")
    _, session_files = subject_trials(root, subject, ingestion)
    missing = sorted(set(trials["session"]) - set(session_files))
    if missing:
        raise design.NSDInputError(f"{trials_path}: sessions {missing} have no betas file any more")
    voxels, shape, affine, reference = {}, None, None, None
    for name, definition in rois.items():
        index, roi_shape, roi_affine, path = betas_mod.roi_voxels(root, subject, definition)
        if len(index) == 0:
            raise design.NSDInputError(f"{path}: ROI {name!r} (labels {definition['labels']}) selects no voxel")
        if shape is not None and roi_shape != shape:
            raise design.NSDInputError(f"{path}: shape {roi_shape} differs from {reference}'s {shape}")
        voxels[name], shape, affine, reference = index, roi_shape, roi_affine, path
    attrs = _provenance(
        subject=subject, nsd_root=os.fspath(root), sessions=sorted(session_files),
        source_files=[session_files[s] for s in sorted(session_files)], ingestion=ingestion, rois=rois,
    )
    betas_mod.stream_roi_betas(
        trials, {s: session_files[s] for s in set(trials["session"])}, voxels, shape, affine,
        out_paths, zscore=ingestion["zscore_per_session"], attrs=attrs,
        float_betas=ingestion["float_betas"], non_finite=ingestion["non_finite_betas"],
    )


def extract_stimuli(stimuli_path, stim_info_path, trials_paths: list[str], out_path: str,
                    caption_files: list[str]) -> None:
    """Images and captions of every image in the given trial tables.

    ``stimuli_path`` and ``stim_info_path``: NSD's stimulus brick and ``nsd_stim_info_merged.csv``
    (:func:`brainldm.nsd.layout.stimuli`, :func:`~brainldm.nsd.layout.stim_info`);
    ``caption_files``: COCO's caption files in the order of :data:`layout.CAPTION_SPLITS`.
    """
    if len(caption_files) != len(layout.CAPTION_SPLITS):
        raise ValueError(f"expected caption files for {layout.CAPTION_SPLITS}, found {list(caption_files)}")
    ids = np.unique(np.concatenate([pd.read_csv(p, sep="\t")["nsd_id"].to_numpy() for p in trials_paths]))
    from .stimuli import extract_stimuli

    extract_stimuli(stimuli_path, stim_info_path, dict(zip(layout.CAPTION_SPLITS, caption_files)), ids, out_path)
