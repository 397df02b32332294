"""Evaluation tables: TSV with a commented header saying what was measured and how.

Every table starts with ``#`` lines naming the protocol, the identification
direction, image sizes and layers, and — with random weights — the notice that
the numbers are not comparable to published ones. ``pandas.read_csv(path,
sep="\\t", comment="#")`` reads them (see :func:`read_table`).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from ..files import atomic_path
from .protocols import COMMUNITY_READOUTS, PIXEL_SIZE, RANDOM_NOTICE, protocol_readouts, scaled_size

PRETRAINED_NOTICE = "pretrained weights (torchvision ImageNet checkpoints, CLIP ViT-L/14, SwAV ResNet-50)"


def weights_line(random: bool) -> str:
    """The header line on the weights: the random-weights notice, or which pretrained weights."""
    return f"{RANDOM_NOTICE} (seeded random networks; CLIP architecture from evaluation.random_clip)" if random \
        else PRETRAINED_NOTICE


def describe(readouts) -> str:
    """``name = network layer at size x size (interpolation)`` for each readout."""
    return "; ".join(f"{r.name} = {r.view.net} {r.layer} at {r.view.size}x{r.view.size} ({r.view.interpolation})"
                     for r in readouts)


def paper_header(scope: str, n_samples: int, settings: dict) -> list[str]:
    """Header of the paper-protocol identification tables (``scope``: a subject or 'pooled').

    ``settings`` is ``config["evaluation"]`` (``weights``, ``image_scale``).
    """
    return [
        f"{scope}: two-way identification accuracy, paper protocol (Takagi & Nishimoto 2023, Figure 5); chance 0.5",
        "direction: ORIGINAL FIXED - an original's features must correlate more with its own reconstruction than "
        f"with each other test image's; correlations averaged over the {n_samples} samples of Xc and Xzc (Xz: 1)",
        f"readouts: {describe(protocol_readouts(settings['image_scale'])['paper'])}",
        weights_line(settings["weights"] == "random"),
    ]


def community_header(scope: str, settings: dict) -> list[str]:
    """Header of the community-metric tables (Brain-Diffuser, MindEye); ``settings`` as :func:`paper_header`."""
    groups = protocol_readouts(settings["image_scale"])
    side = scaled_size(PIXEL_SIZE, settings["image_scale"])
    return [
        f"{scope}: community metrics (Brain-Diffuser, Ozcelik & VanRullen 2023; MindEye, Scotti et al. 2023); "
        "each sample of Xc and Xzc scored as the one reconstruction, then averaged (Xz: 1 sample)",
        f"PixCorr: Pearson r of RGB pixels at {side}x{side} (bilinear), higher better; SSIM: grayscale "
        f"at {side}x{side}, Gaussian window sigma 1.5, higher better",
        f"{', '.join(r.name for r in groups['identification'])}: two-way identification, direction RECONSTRUCTION FIXED - a "
        "reconstruction's features must correlate more with its own original than with each other test image's; "
        "chance 0.5, higher better",
        f"{', '.join(r.name for r in groups['distance'])}: correlation distance to the original's features, "
        "lower better",
        f"readouts: {describe(groups['identification'] + groups['distance'])}",
        weights_line(settings["weights"] == "random"),
    ]


def write_table(table: pd.DataFrame, path: str | os.PathLike, header: list[str]) -> None:
    """Write ``table`` as TSV after ``#`` header lines (atomically)."""
    with atomic_path(path) as tmp, open(tmp, "w") as handle:
        handle.writelines(f"# {line}\n" for line in header)
        table.to_csv(handle, sep="\t", index=False, float_format="%.6g")


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """A table written by :func:`write_table`, without its header lines."""
    return pd.read_csv(path, sep="\t", comment="#")


def read_header(path: str | os.PathLike) -> list[str]:
    """The ``#`` header lines of a table, without the ``# ``."""
    lines = []
    with open(path) as handle:
        for line in handle:
            if not line.startswith("#"):
                break
            lines.append(line[1:].strip())
    return lines


def pooled_identification(per_subject: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per method and readout: each subject's mean accuracy, their mean and standard error.

    Parameters
    ----------
    per_subject : dict
        Subject -> per-image table (``method``, ``readout``, ``accuracy``) of one subject.
    """
    means = pd.concat({s: t.groupby(["method", "readout"], sort=False)["accuracy"].mean()
                       for s, t in per_subject.items()}, axis=1)
    values = means.to_numpy()
    n = values.shape[1]
    means["mean"] = values.mean(axis=1)
    means["sem"] = values.std(axis=1, ddof=1) / np.sqrt(n) if n > 1 else np.nan
    means["n_subjects"] = n
    means["n_images"] = next(iter(per_subject.values())).groupby(["method", "readout"], sort=False).size()
    return means.reset_index()


def pooled_community(per_subject: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per subject and method the mean of each community metric over images and samples; then over subjects."""
    metrics = ["PixCorr", "SSIM", *(r.name for r in COMMUNITY_READOUTS)]
    rows = pd.concat({s: t.groupby("method", sort=False)[metrics].mean() for s, t in per_subject.items()},
                     names=["subject", "method"]).reset_index()
    pooled = rows.groupby("method", sort=False)[metrics].mean().reset_index()
    pooled.insert(0, "subject", f"mean of {len(per_subject)}")
    return pd.concat([rows, pooled], ignore_index=True)
