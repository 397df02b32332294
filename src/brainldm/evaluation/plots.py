"""Evaluation figures: identification bars as the paper's Figure 5, and the best samples."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

from ..files import atomic_path  # noqa: E402
from ..ldm.names import METHODS  # noqa: E402
from .protocols import RANDOM_NOTICE  # noqa: E402

COLORS = {"Xz": "#4c72b0", "Xc": "#dd8452", "Xzc": "#55a868"}


def _title(fig, text: str, random: bool) -> None:
    if random:
        text = f"{text}\n{RANDOM_NOTICE}"
    fig.suptitle(text, fontsize=9, color="firebrick" if random else "black")


def _save(fig, path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_identification(table: pd.DataFrame, path: str | os.PathLike, random: bool) -> None:
    """Bars of pooled identification accuracy per readout and method, SEM error bars, chance at 50%.

    Parameters
    ----------
    table : pandas.DataFrame
        From :func:`brainldm.evaluation.tables.pooled_identification`.
    path : path
        Output PNG.
    random : bool
        Random weights: the title says so.
    """
    readouts = list(dict.fromkeys(table["readout"]))
    methods = [m for m in METHODS if m in set(table["method"])]
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(1.1 * len(readouts) + 2, 3.6))
    x = np.arange(len(readouts))
    for k, method in enumerate(methods):
        rows = table[table["method"] == method].set_index("readout").reindex(readouts)
        ax.bar(x + (k - (len(methods) - 1) / 2) * width, 100 * rows["mean"], width, label=method,
               color=COLORS.get(method), yerr=100 * rows["sem"].fillna(0), capsize=2)
    ax.axhline(50, color="gray", linestyle="--", linewidth=1, label="chance")
    ax.set_xticks(x, readouts, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_ylabel("identification accuracy (%)")
    ax.legend(fontsize=7, ncols=len(methods) + 1, loc="lower right")
    n = int(table["n_subjects"].iloc[0])
    spread = "mean ± SEM over subjects" if n > 1 else "one subject, no error bars"
    _title(fig, f"Two-way identification, original fixed (paper protocol), {n} subject(s), {spread}", random)
    _save(fig, path)


def plot_best_samples(originals: np.ndarray, nsd_ids, files: dict, best: pd.DataFrame, path, subject: str,
                      n_rows: int, random: bool) -> None:
    """A grid: one row per test image (the first ``n_rows``), original then each method's best sample.

    Parameters
    ----------
    originals : numpy.ndarray
        uint8 (n, H, W, 3) in ``nsd_ids`` order.
    files : dict
        (method, sample) -> PNG paths in ``nsd_ids`` order.
    best : pandas.DataFrame
        ``nsd_id``, ``method``, ``best_sample`` (see :mod:`brainldm.evaluation.subject`).
    """
    rows = min(n_rows, len(nsd_ids))
    choice = best.set_index(["method", "nsd_id"])["best_sample"]
    height = 1.6 * rows + 0.8
    fig, axes = plt.subplots(rows, 1 + len(METHODS), figsize=(1.6 * (1 + len(METHODS)), height), squeeze=False)
    fig.subplots_adjust(top=1 - 0.6 / height)
    for i in range(rows):
        tiles = [("original", originals[i])]
        for method in METHODS:
            sample = int(choice[method, nsd_ids[i]])
            with Image.open(files[method, sample][i]) as image:
                tiles.append((f"{method} #{sample}", np.asarray(image.convert("RGB"))))
        for ax, (label, tile) in zip(axes[i], tiles):
            ax.imshow(tile)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(label if i == 0 else label.split(" ")[-1], fontsize=7)
        axes[i, 0].set_ylabel(f"{int(nsd_ids[i]):05d}", fontsize=7)
    _title(fig, f"{subject}: best of the samples by perceptual similarity to the original", random)
    _save(fig, path)
