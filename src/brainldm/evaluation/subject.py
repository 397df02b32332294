"""Scores of one subject's reconstructions: per test image, method and (for the community table) sample.

Images are read in batches and every network sees each batch once; features of
the originals are kept (standardised), those of reconstructions only as their
correlations with the originals, so memory grows with the number of test
images squared, not with the feature sizes times the number of samples.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import torch

from ..ldm.names import METHODS
from .identification import sample_mean_identification, standardize_rows, two_way_identification
from .images import load_originals, read_images, read_test_ids, reconstruction_files
from .metrics import PIXEL_SIZE, correlation_distance, pixel_scores
from ..config import section_settings
from .nets import FeatureExtractor
from .protocols import protocol_readouts, scaled_size
from .plots import plot_best_samples
from .tables import community_header, paper_header, weights_line, write_table

log = logging.getLogger(__name__)


def _batches(n: int, size: int):
    return [np.arange(start, min(start + size, n)) for start in range(0, n, size)]


class SubjectScorer:
    """Correlations of every readout between originals and reconstructions, pixel and distance scores.

    Parameters
    ----------
    originals : numpy.ndarray
        uint8 (n, H, W, 3), the test images in order.
    settings : dict
        ``config["evaluation"]``.
    """

    def __init__(self, originals: np.ndarray, settings: dict):
        self.originals = originals
        self.batch_size = settings["batch_size"]
        self.groups = protocol_readouts(settings["image_scale"])
        self.pixel_size = scaled_size(PIXEL_SIZE, settings["image_scale"])
        self.readouts = tuple(dict.fromkeys(r for group in self.groups.values() for r in group))
        self.extract = FeatureExtractor(self.readouts, settings)
        parts = {r: [] for r in self.readouts}
        for rows in _batches(len(originals), self.batch_size):
            for r, features in self.extract(originals[rows]).items():
                parts[r].append(standardize_rows(features))
        self.features = {r: np.concatenate(p) for r, p in parts.items()}

    def score(self, paths) -> dict:
        """Scores of one set of reconstructions (one method and sample), in the originals' order.

        Returns
        -------
        dict
            ``r``: readout -> (n, n) correlations (originals x reconstructions) of the
            identification readouts; ``PixCorr``, ``SSIM`` and each distance readout's
            name -> (n,) per image.
        """
        n = len(self.originals)
        if len(paths) != n:
            raise ValueError(f"image sets of different sizes: {n} originals, {len(paths)} reconstructions")
        distance = self.groups["distance"]
        r = {ro: np.empty((n, n), np.float32) for ro in self.readouts if ro not in distance}
        scores = {name: np.empty(n) for name in ("PixCorr", "SSIM", *(ro.name for ro in distance))}
        for rows in _batches(n, self.batch_size):
            images = read_images([paths[i] for i in rows])
            scores["PixCorr"][rows], scores["SSIM"][rows] = pixel_scores(self.originals[rows], images, self.pixel_size)
            for ro, features in self.extract(images).items():
                if ro in r:
                    r[ro][:, rows] = self.features[ro] @ standardize_rows(features).T
                else:
                    scores[ro.name][rows] = correlation_distance(self.features[ro][rows], features)
        return {"r": r, **scores}

    def paper_rows(self, nsd_ids, method, per_sample) -> list[pd.DataFrame]:
        """Per image and readout: the paper's identification accuracy and the mean r with its own original."""
        frames = []
        for ro in self.groups["paper"]:
            stacked = np.stack([s["r"][ro] for s in per_sample], axis=2)
            frames.append(pd.DataFrame({"nsd_id": nsd_ids, "method": method, "readout": ro.name,
                                        "accuracy": sample_mean_identification(stacked),
                                        "r_own": np.diagonal(stacked, axis1=0, axis2=1).mean(axis=0)}))
        return frames

    def community_rows(self, nsd_ids, method, per_sample) -> list[pd.DataFrame]:
        """Per image and sample: every metric of the community table."""
        frames = []
        for sample, s in enumerate(per_sample):
            table = pd.DataFrame({"nsd_id": nsd_ids, "method": method, "sample": sample,
                                  "PixCorr": s["PixCorr"], "SSIM": s["SSIM"]})
            for ro in self.groups["identification"]:
                table[ro.name] = two_way_identification(s["r"][ro], fixed="reconstruction")
            for ro in self.groups["distance"]:
                table[ro.name] = s[ro.name]
            frames.append(table)
        return frames

    def best_rows(self, nsd_ids, method, per_sample) -> pd.DataFrame:
        """The sample most similar to its original: highest mean r over the paper's readouts."""
        psm = np.stack([np.mean([np.diagonal(s["r"][ro]) for ro in self.groups["paper"]], axis=0)
                        for s in per_sample], axis=1)
        best = psm.argmax(axis=1)
        return pd.DataFrame({"nsd_id": nsd_ids, "method": method, "best_sample": best,
                             "psm": psm[np.arange(len(best)), best], "psm_mean": psm.mean(axis=1)})


def evaluate_subject(stimuli_path, test_images_path, image_dir, n_samples: int, settings: dict, subject: str,
                     paper_path, community_path, best_path, sheet_path, threads: int | None = None) -> None:
    """Score one subject's Xz, Xc and Xzc of every test image; write per-image tables and the best-sample sheet.

    Parameters
    ----------
    stimuli_path : path
        Stimuli HDF5 (``images``, ``nsd_ids``).
    test_images_path : path
        ``test_images.tsv`` (column ``nsd_id``).
    image_dir : path
        Reconstruction PNGs (see :func:`brainldm.ldm.names.image_name`).
    n_samples : int
        Samples of Xc and Xzc (``config["reconstruction"]["n_samples"]``).
    settings : dict
        ``config["evaluation"]``.
    subject : str
        Named in the tables.
    paper_path, community_path, best_path : path
        TSV outputs: the paper's identification per image, method and readout; the
        community metrics per image, method and sample; the best sample per image and method.
    sheet_path : path
        PNG: original and best sample of each method for the first test images.
    threads : int, optional
        CPU threads of torch (the job's share); torch's default when None.
    """
    began = time.perf_counter()
    if threads:
        torch.set_num_threads(threads)
    settings = section_settings("evaluation", settings)
    nsd_ids = read_test_ids(test_images_path)
    files = reconstruction_files(image_dir, nsd_ids, n_samples)  # all present before any work
    scorer = SubjectScorer(load_originals(stimuli_path, nsd_ids), settings)
    paper, community, best = [], [], []
    for method in METHODS:
        per_sample = [scorer.score(paths) for (m, _), paths in files.items() if m == method]
        paper += scorer.paper_rows(nsd_ids, method, per_sample)
        community += scorer.community_rows(nsd_ids, method, per_sample)
        best.append(scorer.best_rows(nsd_ids, method, per_sample))
        log.info("%s %s: %d samples of %d test images scored", subject, method, len(per_sample), len(nsd_ids))
    random = settings["weights"] == "random"
    write_table(pd.concat(paper, ignore_index=True), paper_path, paper_header(subject, n_samples, settings))
    write_table(pd.concat(community, ignore_index=True), community_path, community_header(subject, settings))
    best = pd.concat(best, ignore_index=True)
    write_table(best, best_path, [f"{subject}: best sample per test image and method by perceptual similarity to "
                                  "the original (psm: mean r over the paper's readouts)", weights_line(random)])
    plot_best_samples(scorer.originals, nsd_ids, files, best, sheet_path, subject, settings["display_rows"], random)
    log.info("%s: evaluated in %.1f s", subject, time.perf_counter() - began)
