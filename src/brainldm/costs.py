"""What each heavy job costs, from the sizes of its inputs and the paper-scale rehearsal's measurements.

A job's cost is a sum of terms, each a count of the work it does (multiply-adds of its
matrix products, values read) times a coefficient measured by ``bench/paper_rehearsal.py``
at NSD's sizes on the rehearsal machine (seconds of CPU per unit, stored in
``data/job_costs.json`` with the machine and the date). Its peak memory is the interpreter's
base plus the bytes of the arrays the algorithm holds, times a measured factor; its outputs'
size is counted exactly. The sizes come from the files a user already has before anything
runs: the design file, ``responses.tsv``, the betas files on disk and the ROI volumes
(trials, sessions, test images, voxels per ROI) and the model folder's config files (latent,
text and U-Net block dimensions). So ``snakemake -n`` on real data shows requests that follow
the data, and :mod:`brainldm.price` adds the jobs of a DAG up before submission.

Only the CPU stages are measured (no GPU was lent to the rehearsal): the GPU rules keep the
requests written in their rules, and the price says so.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from .pca import BLOCK_BYTES

__all__ = [
    "MODELLED_RULES",
    "COUNTED_RULES",
    "SubjectSizes",
    "WorkflowSizes",
    "Cost",
    "coefficients",
    "feature_dims",
    "subject_sizes",
    "work_terms",
    "job_cost",
    "resource_request",
    "job_threads",
]

COSTS_FILE = Path(__file__).with_name("data") / "job_costs.json"
#: Rules whose cost is modelled (one job each per subject, or per subject and feature / target).
MODELLED_RULES = ("extract_roi_betas", "reduce_features", "decode_latent", "encode_feature", "encode_banded")
#: Rules whose outputs are counted but whose time is not measured (the features' files).
COUNTED_RULES = ("gather_features",)
#: Requests: the expected cost times a margin (the rehearsal ran on one machine; nodes differ), plus a
#: start-up allowance for the runtime and a floor for the memory.
TIME_MARGIN, TIME_FLOOR_MIN = 2.0, 10
MEMORY_MARGIN, MEMORY_FLOOR_MB = 1.3, 1000
#: A job expected to need less CPU time than this gets one thread: its Python start-up and threading
#: overheads outweigh a second thread, and two such jobs side by side finish sooner (the demo's jobs).
SMALL_JOB_CPU_S = 60


@dataclass(frozen=True)
class SubjectSizes:
    """The sizes of one subject's data that set the cost of its jobs (from NSD's files)."""

    subject: str
    sessions: int
    trials: int  # in the used sessions
    train_trials: int
    test_images: int  # distinct shared images seen (an upper bound of the test set)
    train_images: int
    grid_voxels: int  # of the betas' volume
    roi_voxels: Mapping[str, int]
    nsd_ids: frozenset = field(repr=False, default=frozenset())


@dataclass(frozen=True)
class WorkflowSizes:
    """Every subject's sizes and the model's feature dimensions (None where the model is not on disk yet)."""

    subjects: Mapping[str, SubjectSizes]
    feature_dims: Mapping[str, int] | None

    @property
    def all_images(self) -> int:
        return len(frozenset().union(*(s.nsd_ids for s in self.subjects.values())))


@dataclass(frozen=True)
class Cost:
    """Expected CPU seconds (on the rehearsal machine), peak memory and outputs of one job; the first two
    are None for a rule that was not measured (its outputs are still counted)."""

    cpu_s: float | None
    peak_mb: float | None
    output_mb: float


@cache
def coefficients(path: str | os.PathLike = COSTS_FILE) -> dict:
    """The rehearsal's coefficients (``data/job_costs.json``); an empty dict when none were written yet."""
    path = Path(path)
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


# --------------------------------------------------------------------------- sizes from the files


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def feature_dims(model_folder: str | os.PathLike, features: Mapping) -> dict[str, int] | None:
    """Values per image of every configured feature, from the model folder's config files.

    ``features`` is ``config["features"]``. z is the VAE latent (``latent_channels`` x
    (``image_size`` / 2^(VAE blocks - 1))^2), c the text encoder's hidden states
    (``model_max_length`` x ``hidden_size``), zc z's; a U-Net block's output has diffusers'
    ``UNet2DConditionModel`` geometry: every down block but the last halves the latent,
    every up block but the last doubles it. None when the folder (or its U-Net) is not there yet.
    """
    from .config import section_settings
    from .ldm.names import feature_specs

    folder = Path(model_folder)
    unet, vae = _read_json(folder / "unet" / "config.json"), _read_json(folder / "vae" / "config.json")
    text = _read_json(folder / "text_encoder" / "config.json")
    if not (unet and vae and text):
        return None
    # the tokenizer pads every caption to model_max_length, within the text encoder's positions
    tokenizer = _read_json(folder / "tokenizer" / "tokenizer_config.json")
    positions = int(text["max_position_embeddings"])
    length = min(int(tokenizer.get("model_max_length") or positions), positions)
    config = section_settings("features", features)
    latent = config["image_size"] // 2 ** (len(vae["block_out_channels"]) - 1)
    channels = list(unet["block_out_channels"])
    n_down = len(channels)

    def block_dim(block: str) -> int:
        if block == "mid_block":
            return channels[-1] * (latent // 2 ** (n_down - 1)) ** 2
        kind, index = block.split(".")
        index = int(index)
        if kind == "down_blocks":
            side = latent // 2 ** min(index + 1, n_down - 1)
            return channels[index] * side**2
        side = latent // 2 ** max(n_down - 2 - index, 0)
        return channels[::-1][index] * side**2

    z = int(vae["latent_channels"]) * latent**2
    dims = {}
    for spec in feature_specs(config):
        dims[spec.name] = {"z": z, "zc": z, "c": length * int(text["hidden_size"])}.get(spec.kind) or \
            block_dim(spec.block)
    return dims


def subject_sizes(root, subject: str, ingestion: Mapping, rois: Mapping) -> SubjectSizes:
    """One subject's sizes from its NSD files (the trials of the used sessions, the ROI volumes)."""
    from .nsd.betas import roi_voxels
    from .nsd.ingest import subject_trials

    table, session_files = subject_trials(root, subject, dict(ingestion))
    voxels, grid = {}, 0
    for name, definition in rois.items():
        index, shape, _, _ = roi_voxels(root, subject, definition)
        voxels[name] = len(index)
        grid = math.prod(shape)
    shared = table["shared"].to_numpy()
    ids = table["nsd_id"].to_numpy()
    return SubjectSizes(subject, len(session_files), len(table), int((~shared).sum()), len(set(ids[shared])),
                        len(set(ids[~shared])), grid, voxels, frozenset(int(i) for i in ids))


# --------------------------------------------------------------------------- work and cost of a job


def _ridge_terms(n: int, p: int, targets: int, alphas: int, cv: int) -> dict[str, float]:
    """The ridge engine's work: cv + 1 Gram matrices and eigendecompositions (setup), and per target the
    rotated products of every fold and alpha (fit)."""
    return {"setup": (cv + 1) * (n * p**2 + p**3), "fit": alphas * n * p * targets}


def work_terms(rule: str, sizes: WorkflowSizes, wildcards: Mapping, config: Mapping) -> dict | None:
    """A job's work terms (``cpu`` units per term), the bytes its algorithm holds (``memory``) and its
    outputs' bytes; None when a size it needs is not known yet (a model folder not built)."""
    subject = sizes.subjects.get(wildcards.get("subject"))
    if rule == "extract_roi_betas":
        rois = sum(subject.roi_voxels.values())
        return {"cpu": {"read": subject.trials * subject.grid_voxels},
                "memory": 4 * subject.test_images * rois * 2,
                "outputs": 4 * (subject.train_trials + subject.test_images) * rois}
    dims = sizes.feature_dims
    if dims is None:
        return None
    if rule == "gather_features":
        unet = 2 if config["features"]["unet_dtype"] == "float16" else 4
        values = sum(d * (unet if name.startswith("unet_") else 4) for name, d in dims.items())
        return {"cpu": {}, "memory": 0, "outputs": sizes.all_images * values}
    n_images = subject.train_images + subject.test_images
    components = min(config["pca"]["n_components"], subject.train_images - 1)
    alphas = len(config["encoding"]["alphas"])
    if rule == "reduce_features":  # the Gram matrices of the images, one column block of features at a time
        block = min(BLOCK_BYTES, 4 * n_images * max(dims.values()))
        return {"cpu": {"gram": n_images**2 * sum(dims.values()), "eig": len(dims) * n_images**3},
                "memory": 8 * 3 * n_images**2 + block,
                "outputs": 4 * len(dims) * n_images * components}
    if rule == "decode_latent":
        p = subject.roi_voxels[config["decoding"]["targets"][wildcards["target"]]]
        targets = dims[wildcards["target"]]
        n, cv = subject.train_trials, config["decoding"]["cv"]
        batch = min(targets, config["decoding"]["n_targets_batch"])
        return {"cpu": _ridge_terms(n, p, targets, len(config["decoding"]["alphas"]), cv),
                "memory": 4 * (2 * n * p + (cv + 1) * p**2 + 3 * n * batch + 3 * subject.test_images * targets),
                "outputs": 4 * subject.test_images * targets}
    voxels = subject.roi_voxels[config["encoding"]["roi"]]
    n, cv, batch = subject.train_trials, config["encoding"]["cv"], config["encoding"]["n_targets_batch"]
    if rule == "encode_feature":
        return {"cpu": _ridge_terms(n, components, voxels, alphas, cv),
                "memory": 4 * (2 * n * components + (cv + 1) * components**2 + 3 * n * min(batch, voxels)),
                "outputs": 8 * 8 * voxels}
    if rule == "encode_banded":
        p, weights = 2 * components, config["encoding"]["banded_n_ratios"]
        terms = _ridge_terms(n, p, voxels, len(config["encoding"]["banded_alphas"] or config["encoding"]["alphas"]),
                             cv)
        return {"cpu": {key: weights * value for key, value in terms.items()},
                "memory": 4 * (3 * n * p + (cv + 1) * p**2 + 3 * n * min(batch, voxels)) + 8 * 2 * p**2,
                "outputs": 8 * 16 * voxels}
    return None


def job_cost(rule: str, sizes: WorkflowSizes | None, wildcards: Mapping, config: Mapping,
             measured: Mapping | None = None) -> Cost | None:
    """The expected cost of one job of ``rule``; None for a rule without measurements or unknown sizes.

    ``measured`` defaults to :func:`coefficients`: per rule, ``cpu`` (seconds per unit of each
    work term), ``base_mb`` and ``memory_factor`` (peak = base + factor x the bytes held).
    """
    measured = coefficients() if measured is None else measured
    if sizes is None:
        return None
    terms = work_terms(rule, sizes, wildcards, config)
    if terms is None:
        return None
    fitted = measured.get("rules", {}).get(rule)
    if fitted is None:
        return Cost(None, None, terms["outputs"] / 2**20)
    cpu_s = sum(fitted["cpu"][term] * units for term, units in terms["cpu"].items())
    peak_mb = fitted["base_mb"] + fitted["memory_factor"] * terms["memory"] / 2**20
    return Cost(cpu_s, peak_mb, terms["outputs"] / 2**20)


def resource_request(cost: Cost | None, threads: int, default: Mapping) -> dict[str, int]:
    """``mem_mb`` and ``runtime`` (minutes) to ask a scheduler for: the expected cost with margins, or
    ``default`` (the rule's own values) when the cost is not known."""
    if cost is None or cost.cpu_s is None:
        return {"mem_mb": int(default["mem_mb"]), "runtime": int(default["runtime"])}
    wall_min = cost.cpu_s / max(1, threads) / 60
    return {"mem_mb": int(max(MEMORY_FLOOR_MB, math.ceil(cost.peak_mb * MEMORY_MARGIN / 100) * 100)),
            "runtime": int(math.ceil(wall_min * TIME_MARGIN) + TIME_FLOOR_MIN)}


def job_threads(cost: Cost | None, most: int) -> int:
    """Threads of a job: 1 when it is expected to take under :data:`SMALL_JOB_CPU_S` CPU seconds, else
    ``most`` (the rule's own value; also when the cost is not known)."""
    if cost is not None and cost.cpu_s is not None and cost.cpu_s < SMALL_JOB_CPU_S:
        return 1
    return int(most)
