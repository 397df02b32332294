"""Evaluation figures: Figure 5 bars for one subject or several, the best-sample sheet."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from brainldm.evaluation.plots import plot_best_samples, plot_identification


def _table(n_subjects: int) -> pd.DataFrame:
    rows = [{"method": m, "readout": r, "mean": 0.5 + 0.1 * k, "sem": 0.02 if n_subjects > 1 else np.nan,
             "n_subjects": n_subjects} for k, m in enumerate(("Xz", "Xc", "Xzc")) for r in ("AlexNet early", "CLIP late")]
    return pd.DataFrame(rows)


def test_identification_plot_with_and_without_error_bars(tmp_path):
    for n in (1, 4):
        plot_identification(_table(n), tmp_path / f"{n}.png", random=n == 1)
        with Image.open(tmp_path / f"{n}.png") as image:
            assert image.width > 400 and image.height > 200


def test_best_sample_sheet(tmp_path, rng):
    ids = np.array([3, 8])
    originals = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    files = {}
    for method, samples in (("Xz", [0]), ("Xc", [0, 1]), ("Xzc", [0, 1])):
        for sample in samples:
            files[method, sample] = []
            for i in ids:
                path = tmp_path / f"{method}_{i}_{sample}.png"
                Image.fromarray(originals[0]).save(path)
                files[method, sample].append(path)
    best = pd.DataFrame([{"nsd_id": i, "method": m, "best_sample": 1 if m != "Xz" else 0}
                         for m in ("Xz", "Xc", "Xzc") for i in ids])
    plot_best_samples(originals, ids, files, best, tmp_path / "sheet.png", "subj01", n_rows=5, random=True)
    assert (tmp_path / "sheet.png").stat().st_size > 2000
