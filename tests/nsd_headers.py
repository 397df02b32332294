"""An NSD tree of the paper's sizes holding only what the DAG build reads, for dry runs at real scale.

What is real-sized: ``nsd_expdesign.mat`` (NSD's layout: ``masterordering`` of 30,000 trials,
``subjectim`` of 8 x 10,000 73k ids, ``sharedix`` of the 1,000 shared images), each subject's
``responses.tsv`` (40 sessions of 750 trials in 12 runs), the ROI volumes (subj01's 1.8 mm grid,
81 x 104 x 83, for every subject; a brain mask of about 300,000 voxels, the streams labels early
and ventral on 6,000 and 8,000 of them: assumed sizes, as in ``bench/paper_rehearsal.py``). The
betas files, the stimulus brick, the stimulus table and the caption files are empty placeholders:
a dry run checks that they exist, and nothing here reads them. The model folder is SD 1.4's as
the hub ships it: its published component configs (``tests/data/hub``) and empty weight files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import scipy.io

import brainldm.nsd.layout as layout
from brainldm.synthetic.nsd_tree import SyntheticDesign, make_design

PAPER_SUBJECTS = ("subj01", "subj02", "subj05", "subj07")
GRID = (81, 104, 83)
EARLY, VENTRAL = 6_000, 8_000
NSD_DESIGN = SyntheticDesign(n_shared_images=1000, n_unique_images=9000, repetitions=3, trials_per_session=750,
                             runs_per_session=12, sessions_withheld=0)
HUB = Path(__file__).resolve().parent / "data" / "hub" / "CompVis--stable-diffusion-v1-4"


def _touch(path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).touch()


def _brain(shape, fraction: float = 0.43) -> np.ndarray:
    """An ellipsoid filling ``fraction`` of the grid (NSD subj01: about 300,000 of 699,192 voxels)."""
    axes = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    radius = sum(a**2 for a in axes)
    return radius <= np.quantile(radius, fraction)


def build_nsd_headers(root: Path, subjects=PAPER_SUBJECTS, sessions: int = 40, seed: int = 0) -> Path:
    """Write the tree under ``root`` (see the module docstring); return ``root``."""
    design = make_design(NSD_DESIGN, seed)
    path = Path(layout.expdesign(root))
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, design, format="5", oned_as="row")
    order = design["masterordering"].ravel().astype(int)
    per_session = NSD_DESIGN.trials_per_session
    run_sizes = [len(r) for r in np.array_split(np.arange(per_session), NSD_DESIGN.runs_per_session)]
    runs = np.repeat(np.arange(1, len(run_sizes) + 1), run_sizes)
    trials = np.concatenate([np.arange(1, k + 1) for k in run_sizes])
    rng = np.random.default_rng(seed)
    for subject in subjects:
        row = layout.NSD_SUBJECTS.index(subject)
        n = sessions * per_session
        ten_k = order[:n]
        table = pd.DataFrame({"SUBJECT": row + 1, "SESSION": np.repeat(np.arange(1, sessions + 1), per_session),
                              "RUN": np.tile(runs, sessions), "TRIAL": np.tile(trials, sessions),
                              "73KID": design["subjectim"][row, ten_k - 1].astype(int), "10KID": ten_k})
        responses = Path(layout.responses(root, subject))
        responses.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(responses, sep="\t", index=False)
        for session in range(1, sessions + 1):
            _touch(layout.betas(root, subject, session, "hdf5"))
        brain = _brain(GRID)
        streams = np.zeros(GRID, np.int16)
        chosen = rng.choice(np.flatnonzero(brain), EARLY + VENTRAL, replace=False)
        streams.reshape(-1)[chosen[:EARLY]] = 1
        streams.reshape(-1)[chosen[EARLY:]] = 5
        affine = np.diag([1.8, 1.8, 1.8, 1.0])
        for out, data in ((layout.roi(root, subject, "streams"), streams),
                          (layout.brainmask(root, subject), brain.astype(np.int16))):
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(data, affine), out)
    for placeholder in (layout.stim_info(root), layout.stimuli(root),
                        *(layout.captions(root, split) for split in layout.CAPTION_SPLITS)):
        _touch(placeholder)
    return root


def build_sd14_configs(out: Path) -> Path:
    """SD 1.4's folder as the hub ships it, configs only: the published files and empty weights."""
    shutil.copytree(HUB, out)
    for component, weights in (("unet", "diffusion_pytorch_model.safetensors"),
                               ("vae", "diffusion_pytorch_model.safetensors"),
                               ("text_encoder", "model.safetensors")):
        _touch(out / component / weights)
    for component in ("safety_checker", "feature_extractor"):
        (out / component).mkdir(exist_ok=True)
    return out
