"""Relative paths of the NSD files this pipeline reads.

These are facts of the NSD release (and of the synthetic tree that mirrors it);
every function takes the tree's root so no location is assumed.
"""

from __future__ import annotations

import os

#: NSD scanned eight subjects; the design file has one row per subject.
NSD_SUBJECTS = tuple(f"subj{k:02d}" for k in range(1, 9))
BETAS_FORMATS = ("hdf5", "nii.gz")
CAPTION_SPLITS = ("train2017", "val2017")
ROI_FILES = ("streams", "nsdgeneral")

#: Labels of ``streams.nii.gz`` (NSD's "streams" atlas); -1 marks voxels outside the brain.
STREAMS_LABELS = {
    -1: "outside",
    0: "unlabelled",
    1: "early",
    2: "midventral",
    3: "midlateral",
    4: "midparietal",
    5: "ventral",
    6: "lateral",
    7: "parietal",
}


def _join(root: str | os.PathLike, *parts: str) -> str:
    return os.path.join(os.fspath(root), *parts)


def expdesign(root) -> str:
    """``nsd_expdesign.mat``: masterordering, subjectim, sharedix (1-based)."""
    return _join(root, "nsddata", "experiments", "nsd", "nsd_expdesign.mat")


def stim_info(root) -> str:
    """``nsd_stim_info_merged.csv``: one row per 73k image, 0-based index column."""
    return _join(root, "nsddata", "experiments", "nsd", "nsd_stim_info_merged.csv")


def stimuli(root) -> str:
    """``nsd_stimuli.hdf5`` holding the ``imgBrick`` dataset."""
    return _join(root, "nsddata_stimuli", "stimuli", "nsd", "nsd_stimuli.hdf5")


#: Where COCO's captions come from: they are not part of NSD's download.
CAPTIONS_SOURCE = (
    "COCO's captions are not part of NSD: download COCO 2017's annotations_trainval2017.zip (the COCO "
    "dataset's download page, '2017 Train/Val annotations') and unpack its captions_train2017.json and "
    "captions_val2017.json there, or set ingestion.captions_dir to the folder that holds them"
)


def captions_dir(root) -> str:
    """Default folder of the COCO caption files: where the nsd_access package unpacks COCO's annotations."""
    return _join(root, "nsddata_stimuli", "stimuli", "nsd", "annotations")


def captions(root, split: str, folder=None) -> str:
    """COCO caption file of one split (``train2017`` or ``val2017``), in ``folder`` or :func:`captions_dir`."""
    return os.path.join(os.fspath(folder) if folder else captions_dir(root), f"captions_{split}.json")


def responses(root, subject: str) -> str:
    """Behavioural ``responses.tsv`` of a subject: one row per trial."""
    return _join(root, "nsddata", "ppdata", subject, "behav", "responses.tsv")


def betas_dir(root, subject: str) -> str:
    """Folder of a subject's single-trial betas (1.8 mm, fithrf_GLMdenoise_RR)."""
    return _join(root, "nsddata_betas", "ppdata", subject, "func1pt8mm", "betas_fithrf_GLMdenoise_RR")


def betas(root, subject: str, session: int, fmt: str) -> str:
    """Betas of one session, ``fmt`` one of :data:`BETAS_FORMATS`."""
    if fmt not in BETAS_FORMATS:
        raise ValueError(f"betas format must be one of {BETAS_FORMATS}, found {fmt!r}")
    return os.path.join(betas_dir(root, subject), f"betas_session{session:02d}.{fmt}")


def ncsnr(root, subject: str) -> str:
    """Noise-ceiling SNR map of a subject."""
    return os.path.join(betas_dir(root, subject), "ncsnr.nii.gz")


def roi(root, subject: str, name: str) -> str:
    """An ROI volume, e.g. ``streams`` or ``nsdgeneral``."""
    return _join(root, "nsddata", "ppdata", subject, "func1pt8mm", "roi", f"{name}.nii.gz")


def brainmask(root, subject: str) -> str:
    """Brain mask of a subject in its functional space."""
    return _join(root, "nsddata", "ppdata", subject, "func1pt8mm", "brainmask.nii.gz")


def root_from_expdesign(path: str | os.PathLike) -> str:
    """The tree's root, given the path of its ``nsd_expdesign.mat``."""
    path = os.path.normpath(os.fspath(path))
    suffix = os.path.normpath(expdesign(""))
    if not path.endswith(suffix):
        raise ValueError(f"{path!r} is not an NSD design file path (expected it to end with {suffix!r})")
    return path[: -len(suffix)].rstrip(os.sep) or "."
