"""A synthetic Natural Scenes Dataset tree with planted ground truth.

Same paths and formats as the NSD release (see :mod:`brainldm.nsd.layout`):
the design file, the stimulus info table, the image brick, COCO caption files,
behavioural responses, single-trial betas per session (HDF5 and/or NIfTI,
int16 percent signal change x 300) and ROI volumes. Responses are planted:

* early (``streams`` 1) voxels: Gaussian receptive fields on local contrast energy
  (edges) normalised by the image's mean energy, as complex cells of V1;
* ventral (5) voxels: a weight per object category present in the scene;
* the other streams: a mixture of both; unlabelled cortex: noise only;
* per-session offsets and a drifting gain, per-trial noise, a few dead voxels.

The truth (voxel roles, signal and noise standard deviations, the noiseless
signal per image) is written beside the tree.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from dataclasses import dataclass

import h5py
import nibabel as nib
import numpy as np
import scipy.io
from PIL import Image

from ..config import check_synthetic_sizes
from ..files import atomic_path
from ..nsd import layout
from ..nsd.layout import NSD_SUBJECTS
from ..seeds import rng_for
from . import scenes

log = logging.getLogger(__name__)

#: Betas are stored as percent signal change times this factor, as int16.
BETAS_SCALE = 300
ROLES = ("noise", "lowlevel", "semantic", "mixed", "dead")
#: Side of the grid on which receptive fields are evaluated.
RF_GRID = 32
#: Luminance weights of the red, green and blue channels (ITU-R BT.601).
LUMINANCE = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class SyntheticDesign:
    """Sizes of a synthetic NSD experiment (the NSD values in brackets)."""

    n_shared_images: int  # 1000
    n_unique_images: int  # 9000 per subject
    repetitions: int  # 3
    trials_per_session: int  # 750
    runs_per_session: int  # 12
    sessions_withheld: int  # 3 of 40 are not public

    @property
    def images_per_subject(self) -> int:
        return self.n_shared_images + self.n_unique_images

    @property
    def n_images(self) -> int:
        return self.n_shared_images + len(NSD_SUBJECTS) * self.n_unique_images

    @property
    def n_trials(self) -> int:
        return self.images_per_subject * self.repetitions

    @property
    def n_sessions(self) -> int:
        return self.n_trials // self.trials_per_session

    @property
    def sessions_released(self) -> int:
        return self.n_sessions - self.sessions_withheld

    @classmethod
    def from_config(cls, synthetic: dict) -> "SyntheticDesign":
        """The design of the ``synthetic`` section; sizes that do not fit raise ``ConfigError`` naming the key."""
        check_synthetic_sizes(synthetic)
        return cls(**{field: synthetic[field] for field in cls.__dataclass_fields__})


def subject_sessions(synthetic: dict, subject: str) -> int:
    """Sessions on disk for one subject: the released ones, or fewer where ``sessions_completed`` says so."""
    released = SyntheticDesign.from_config(synthetic).sessions_released
    return min(released, int(synthetic.get("sessions_completed", {}).get(subject, released)))


def _h5_dataset(group, name, data, **kwargs):
    # track_times=False keeps files byte-identical between runs.
    return group.create_dataset(name, data=data, track_times=False, **kwargs)


def _save_mat(path, arrays: dict) -> None:
    """``scipy.io.savemat`` with a fixed header (it stamps the creation time)."""
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, arrays, format="5", oned_as="row")
    data = bytearray(buffer.getvalue())
    data[:116] = b"MATLAB 5.0 MAT-file, written by brainldm (synthetic NSD)".ljust(116, b" ")
    with atomic_path(path) as tmp:
        tmp.write_bytes(bytes(data))


def _save_nifti(path, data: np.ndarray, affine: np.ndarray) -> None:
    image = nib.Nifti1Image(data, affine)
    image.header.set_data_dtype(data.dtype)
    with atomic_path(path) as tmp:
        nib.save(image, tmp)


def _save_json(path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))


def make_design(design: SyntheticDesign, seed: int) -> dict[str, np.ndarray]:
    """Arrays of ``nsd_expdesign.mat`` (1-based, as NSD stores them).

    Returns
    -------
    dict
        ``masterordering`` (1, n_trials): 1-based index into a subject's image
        list, shared images first; ``subjectim`` (8, images_per_subject):
        1-based 73k ids; ``sharedix`` (1, n_shared): 1-based 73k ids.
    """
    rng = rng_for(seed, "design")
    ids = rng.permutation(design.n_images)  # 0-based 73k ids
    shared = np.sort(ids[: design.n_shared_images])
    subjectim = np.empty((len(NSD_SUBJECTS), design.images_per_subject), dtype=np.int64)
    for k in range(len(NSD_SUBJECTS)):
        start = design.n_shared_images + k * design.n_unique_images
        unique = np.sort(ids[start : start + design.n_unique_images])
        subjectim[k] = np.concatenate([shared, unique]) + 1
    order = np.repeat(np.arange(1, design.images_per_subject + 1), design.repetitions)
    masterordering = rng.permutation(order)
    return {
        "masterordering": masterordering[None, :].astype(np.float64),
        "subjectim": subjectim.astype(np.float64),
        "sharedix": (shared + 1)[None, :].astype(np.float64),
    }


def _stim_info_rows(expdesign: dict, coco_ids: np.ndarray, coco_splits: list[str]) -> tuple[list, list]:
    """Header and rows of ``nsd_stim_info_merged.csv``."""
    masterordering = expdesign["masterordering"].ravel().astype(int)
    subjectim = expdesign["subjectim"].astype(int)
    shared = set(expdesign["sharedix"].ravel().astype(int) - 1)
    n_images = len(coco_ids)
    n_subjects, _ = subjectim.shape
    seen = np.zeros((n_images, n_subjects), dtype=int)
    reps = np.zeros((n_images, n_subjects, 3), dtype=int)
    for k in range(n_subjects):
        counts = np.zeros(n_images, dtype=int)
        for trial, index10k in enumerate(masterordering, start=1):
            nsd_id = subjectim[k, index10k - 1] - 1
            seen[nsd_id, k] = 1
            if counts[nsd_id] < 3:
                reps[nsd_id, k, counts[nsd_id]] = trial
            counts[nsd_id] += 1
    header = ["", "cocoId", "cocoSplit", "cropBox", "loss", "nsdId", "flagged", "BOLD5000", "shared1000"]
    header += [f"subject{k + 1}" for k in range(n_subjects)]
    header += [f"subject{k + 1}_rep{r}" for k in range(n_subjects) for r in range(3)]
    rows = []
    for i in range(n_images):
        row = [i, int(coco_ids[i]), coco_splits[i], "(0, 0, 0, 0)", 0.0, i, False, False, i in shared]
        row += [int(seen[i, k]) for k in range(n_subjects)]
        row += [int(reps[i, k, r]) for k in range(n_subjects) for r in range(3)]
        rows.append(row)
    return header, rows


def build_synthetic_stimuli(root: str | os.PathLike, truth_path: str | os.PathLike, synthetic: dict) -> None:
    """Write the subject-independent part of the tree.

    Parameters
    ----------
    root : path
        Root of the synthetic NSD tree.
    truth_path : path
        HDF5 file of the scene parameters per 73k id (the semantic ground truth).
    synthetic : dict
        The ``synthetic`` section of the configuration.
    """
    design = SyntheticDesign.from_config(synthetic)
    seed, size = synthetic["seed"], synthetic["image_size"]
    expdesign = make_design(design, seed)
    _save_mat(layout.expdesign(root), expdesign)

    rng = rng_for(seed, "coco")
    coco_ids = rng.choice(np.arange(1, 10 * design.n_images + 1), size=design.n_images, replace=False)
    splits = ["val2017" if r < synthetic["val_fraction"] else "train2017" for r in rng.random(design.n_images)]
    header, rows = _stim_info_rows(expdesign, coco_ids, splits)
    with atomic_path(layout.stim_info(root)) as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)

    coco = {split: {"info": {"description": "brainldm synthetic captions (COCO format)"},
                    "licenses": [], "images": [], "annotations": []} for split in layout.CAPTION_SPLITS}
    scene_list = []
    annotation_id = 1
    with atomic_path(layout.stimuli(root)) as tmp, h5py.File(tmp, "w") as h5:
        brick = h5.create_dataset(
            "imgBrick", shape=(design.n_images, size, size, 3), dtype=np.uint8,
            chunks=(1, size, size, 3), track_times=False,
        )
        for nsd_id in range(design.n_images):
            extra = rng_for(seed, "n_captions", nsd_id)
            n_captions = synthetic["captions_per_image"]
            if extra.random() < synthetic["extra_captions_fraction"]:
                n_captions += int(extra.integers(1, 3))
            scene, image, captions = scenes.make_stimulus(seed, nsd_id, size, n_captions)
            brick[nsd_id] = image
            scene_list.append(scene)
            entry = coco[splits[nsd_id]]
            coco_id = int(coco_ids[nsd_id])
            entry["images"].append({"id": coco_id, "file_name": f"{coco_id:012d}.jpg", "height": size, "width": size})
            for caption in captions:
                entry["annotations"].append({"id": annotation_id, "image_id": coco_id, "caption": caption})
                annotation_id += 1
    for split in layout.CAPTION_SPLITS:
        _save_json(layout.captions(root, split), coco[split])

    with atomic_path(truth_path) as tmp, h5py.File(tmp, "w") as h5:
        for name, values in scenes.scene_table(scene_list).items():
            _h5_dataset(h5, name, values)
        h5.attrs["categories"] = list(scenes.CATEGORIES)
        h5.attrs["colours"] = list(scenes.COLOURS)
        h5.attrs["backgrounds"] = list(scenes.BACKGROUNDS)
        h5.attrs["index"] = "row = 0-based 73k id"
    log.info("wrote %d stimuli (%d px) and the design of %d trials", design.n_images, size, design.n_trials)


def _standardise(x: np.ndarray) -> np.ndarray:
    sd = x.std(axis=0)
    return np.divide(x - x.mean(axis=0), sd, out=np.zeros_like(x), where=sd > 0)


def _gaussian_receptive_fields(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {
        "rf_x": rng.uniform(0.1, 0.9, n),
        "rf_y": rng.uniform(0.1, 0.9, n),
        "rf_sigma": rng.uniform(0.06, 0.2, n),
    }


def lowlevel_responses(images: np.ndarray, rf: dict[str, np.ndarray]) -> np.ndarray:
    """Receptive-field responses: normalised local contrast energy under a Gaussian.

    The energy is the luminance gradient magnitude (edges, at any orientation), as
    V1 complex cells respond to it, divided by the image's mean energy (divisive
    normalisation, Carandini & Heeger 2012). How much edge an image has overall
    follows from what captions say (objects, sizes, backgrounds); where in the
    field the edges fall does not, so these responses are carried by the image
    latent z much more than by the text latent c, as early visual cortex is in
    the paper.

    Parameters
    ----------
    images : numpy.ndarray
        ``(n_images, H, W, 3)`` uint8.
    rf : dict
        ``rf_x``, ``rf_y``, ``rf_sigma`` (fractions of the width).

    Returns
    -------
    numpy.ndarray
        ``(n_images, n_voxels)``.
    """
    luminance = np.stack([
        np.asarray(Image.fromarray(im).resize((RF_GRID, RF_GRID), Image.BOX), dtype=np.float64) / 255
        for im in images
    ]) @ np.asarray(LUMINANCE)
    d_y, d_x = np.gradient(luminance, axis=(1, 2))
    energy = np.hypot(d_x, d_y).reshape(len(images), -1)  # (n_images, grid cells)
    centres = (np.arange(RF_GRID) + 0.5) / RF_GRID
    gy, gx = np.meshgrid(centres, centres, indexing="ij")
    d2 = (gx.ravel()[None] - rf["rf_x"][:, None]) ** 2 + (gy.ravel()[None] - rf["rf_y"][:, None]) ** 2
    weights = np.exp(-d2 / (2 * rf["rf_sigma"][:, None] ** 2))
    weights /= weights.sum(axis=1, keepdims=True)
    pooled = energy.mean(axis=1, keepdims=True)
    normalised = np.divide(energy, pooled, out=np.zeros_like(energy), where=pooled > 0)
    return normalised @ weights.T


def semantic_responses(categories: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Sum of category weights over the objects present (``categories`` -1 = none)."""
    present = np.zeros((len(categories), weights.shape[1]))
    for slot in categories.T:
        rows = np.flatnonzero(slot >= 0)
        present[rows, slot[rows]] = 1
    return present @ weights.T


def plant_voxels(labels: np.ndarray, synthetic: dict, subject: str, images, categories) -> dict[str, np.ndarray]:
    """Roles, parameters and noiseless signal of every brain voxel of a subject.

    Parameters
    ----------
    labels : numpy.ndarray
        ``streams`` labels of the brain voxels (0 unlabelled, 1-7 streams).
    synthetic : dict
        The ``synthetic`` configuration section (signal sizes, seed).
    subject : str
        Subject id; seeds every draw.
    images : numpy.ndarray
        The subject's images, ``(n_images, H, W, 3)``, in its 10k-list order.
    categories : numpy.ndarray
        ``(n_images, max_objects)`` category per object slot, -1 for none.
    """
    signal_cfg = synthetic["signal"]
    rng = rng_for(synthetic["seed"], subject, "voxels")
    n = len(labels)
    role = np.select([labels == 0, labels == 1, labels == 5], [0, 1, 2], default=3).astype(np.int8)
    dead = rng.choice(n, size=int(round(signal_cfg["dead_voxel_fraction"] * n)), replace=False)
    role[dead] = ROLES.index("dead")
    params = _gaussian_receptive_fields(rng, n)
    params["category_weights"] = rng.normal(size=(n, len(scenes.CATEGORIES)))
    params["mix_weight"] = np.where(role == 3, rng.uniform(0.2, 0.8, n), np.nan)
    low = _standardise(lowlevel_responses(images, params))
    sem = _standardise(semantic_responses(categories, params["category_weights"]))
    mix = np.sqrt(np.nan_to_num(params["mix_weight"]))
    mixed = _standardise(mix * low + np.sqrt(1 - mix**2) * sem)
    sd_by_role = np.array([0.0, signal_cfg["lowlevel_sd"], signal_cfg["semantic_sd"], signal_cfg["mixed_sd"], 0.0])
    signal_sd = sd_by_role[role]
    shape = np.select([role == 1, role == 2, role == 3], [low, sem, mixed], default=0.0)
    noise_sd = signal_cfg["noise_sd"] * rng.uniform(0.8, 1.25, n)
    noise_sd[role == ROLES.index("dead")] = 0.0
    return {
        "role": role,
        "signal": (shape * signal_sd).astype(np.float32),
        "signal_sd": signal_sd,
        "noise_sd": noise_sd,
        "baseline": rng.normal(0.0, signal_cfg["baseline_sd"], n),
        **params,
    }


def _runs_and_trials(trials_per_session: int, runs_per_session: int) -> tuple[np.ndarray, np.ndarray]:
    """1-based run and within-run trial numbers of the trials of one session."""
    run_sizes = [len(part) for part in np.array_split(np.arange(trials_per_session), runs_per_session)]
    runs = np.repeat(np.arange(1, runs_per_session + 1), run_sizes)
    trials = np.concatenate([np.arange(1, k + 1) for k in run_sizes])
    return runs, trials


def _write_betas(root, subject, session, volume_betas, affine, formats) -> None:
    """Write one session: HDF5 as (trials, Z, Y, X), NIfTI as (X, Y, Z, trials).

    The HDF5 is laid out as NSD's: chunks ``[1 1 1 trials]`` in MATLAB order, i.e.
    one uncompressed chunk per voxel holding all its trials, so that the reader
    is tested on the layout it meets on the real files.
    """
    if "hdf5" in formats:
        n_trials = volume_betas.shape[3]
        with atomic_path(layout.betas(root, subject, session, "hdf5")) as tmp, h5py.File(tmp, "w") as h5:
            _h5_dataset(h5, "betas", np.ascontiguousarray(volume_betas.transpose(3, 2, 1, 0)),
                        chunks=(n_trials, 1, 1, 1))
    if "nii.gz" in formats:
        _save_nifti(layout.betas(root, subject, session, "nii.gz"), volume_betas, affine)


def build_synthetic_subject(
    root: str | os.PathLike,
    subject: str,
    labels_path: str | os.PathLike,
    scenes_path: str | os.PathLike,
    truth_path: str | os.PathLike,
    synthetic: dict,
) -> None:
    """Write one subject's behaviour, betas, ROIs and planted truth.

    Reads the design, the image brick and the scene truth written by
    :func:`build_synthetic_stimuli` the way the pipeline reads real NSD files.

    Parameters
    ----------
    root : path
        Root of the synthetic NSD tree.
    subject : str
        ``subjXX``, one of NSD's eight subjects.
    labels_path : path
        The anatomy written by :func:`brainldm.synthetic.anatomy.build_synthetic_anatomy`.
    scenes_path : path
        Scene parameters per 73k id (from :func:`build_synthetic_stimuli`).
    truth_path : path
        Output HDF5 of this subject's planted truth.
    synthetic : dict
        The ``synthetic`` configuration section.
    """
    design = SyntheticDesign.from_config(synthetic)
    if subject not in NSD_SUBJECTS:
        raise ValueError(f"subject must be one of {NSD_SUBJECTS}, found {subject!r}")
    expdesign = scipy.io.loadmat(layout.expdesign(root))
    masterordering = expdesign["masterordering"].ravel().astype(int)
    subject_ids = expdesign["subjectim"][NSD_SUBJECTS.index(subject)].astype(int) - 1  # 0-based
    with h5py.File(layout.stimuli(root), "r") as h5:
        brick = h5["imgBrick"]
        images = np.stack([brick[nsd_id] for nsd_id in subject_ids])  # one chunk per image
    with h5py.File(scenes_path, "r") as h5:
        categories = h5["category"][:][subject_ids]

    anatomy = nib.load(labels_path)
    label_volume = np.asarray(anatomy.dataobj)
    brain = np.flatnonzero(label_volume.ravel() >= 0)
    labels = label_volume.ravel()[brain]
    truth = plant_voxels(labels, synthetic, subject, images, categories)
    signal_cfg = synthetic["signal"]

    n_sessions = subject_sessions(synthetic, subject)
    drift = signal_cfg["session_gain_drift"]
    gains = 1 + drift * (np.linspace(-0.5, 0.5, n_sessions) if n_sessions > 1 else np.zeros(1))
    offsets = np.empty((n_sessions, len(brain)))
    runs, trials_in_run = _runs_and_trials(design.trials_per_session, design.runs_per_session)
    dead = truth["role"] == ROLES.index("dead")
    seen = set()
    rows = []
    for session in range(1, n_sessions + 1):
        rng = rng_for(synthetic["seed"], subject, "session", session)
        positions = np.arange((session - 1) * design.trials_per_session, session * design.trials_per_session)
        index10k = masterordering[positions]
        offsets[session - 1] = truth["baseline"] + rng.normal(0, signal_cfg["session_offset_sd"], len(brain))
        betas = (
            offsets[session - 1]
            + gains[session - 1] * truth["signal"][index10k - 1]
            + truth["noise_sd"] * rng.normal(size=(len(positions), len(brain)))
        )
        betas[:, dead] = 0.0
        scaled = np.clip(np.rint(betas * BETAS_SCALE), -32768, 32767).astype(np.int16)
        volume = np.zeros((label_volume.size, len(positions)), dtype=np.int16)
        volume[brain] = scaled.T
        _write_betas(root, subject, session, volume.reshape(label_volume.shape + (-1,)), anatomy.affine,
                     synthetic["betas_formats"])
        for k, index in enumerate(index10k):
            rows.append([
                NSD_SUBJECTS.index(subject) + 1, session, runs[k], trials_in_run[k],
                subject_ids[index - 1] + 1, index, int(index in seen),
                int(rng.random() < 0.8), round(float(rng.uniform(400, 1500)), 1), 0,
            ])
            seen.add(index)

    with atomic_path(layout.responses(root, subject)) as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerow(["SUBJECT", "SESSION", "RUN", "TRIAL", "73KID", "10KID", "ISOLD", "ISCORRECT", "RT", "MISSINGDATA"])
            writer.writerows(rows)

    def volume_of(values, fill, dtype):
        out = np.full(label_volume.size, fill, dtype=dtype)
        out[brain] = values
        return out.reshape(label_volume.shape)

    streams = label_volume.astype(np.int16)
    _save_nifti(layout.roi(root, subject, "streams"), streams, anatomy.affine)
    nsdgeneral = np.where(streams > 0, 1, np.where(streams == 0, 0, -1)).astype(np.int16)
    _save_nifti(layout.roi(root, subject, "nsdgeneral"), nsdgeneral, anatomy.affine)
    _save_nifti(layout.brainmask(root, subject), (streams >= 0).astype(np.int16), anatomy.affine)
    ncsnr = np.divide(truth["signal_sd"], truth["noise_sd"], out=np.zeros(len(brain)), where=truth["noise_sd"] > 0)
    _save_nifti(layout.ncsnr(root, subject), volume_of(ncsnr, 0, np.float32), anatomy.affine)

    with atomic_path(truth_path) as tmp, h5py.File(tmp, "w") as h5:
        _h5_dataset(h5, "voxel_index", brain)
        _h5_dataset(h5, "stream", labels)
        for name, values in truth.items():
            if name == "signal":
                _h5_dataset(h5, name, values, compression="gzip", compression_opts=1)
            else:
                _h5_dataset(h5, name, values)
        _h5_dataset(h5, "ncsnr", ncsnr)
        _h5_dataset(h5, "session_offset", offsets)
        _h5_dataset(h5, "session_gain", gains)
        _h5_dataset(h5, "signal_nsd_ids", subject_ids)
        h5.attrs["roles"] = list(ROLES)
        h5.attrs["volume_shape"] = label_volume.shape
        h5.attrs["voxel_index"] = "flat C-order index into the (X, Y, Z) NIfTI volume"
        h5.attrs["signal"] = "noiseless response (percent signal change) per image of the subject's list x voxel"
        h5.attrs["signal_nsd_ids"] = "0-based 73k id of each signal row (subjectim order)"
        h5.attrs["units"] = "percent signal change; files store x300 as int16"
    log.info("%s: %d sessions, %d brain voxels, roles %s", subject, n_sessions, len(brain),
             {r: int((truth["role"] == k).sum()) for k, r in enumerate(ROLES)})
