"""Voxel-wise encoding models: features -> every voxel (paper section 3.5, Figs. 6-9).

* :func:`encode_feature` -- one L2 ridge per (subject, feature): X is the PCA row of
  each training trial's image (centred on the training trials and divided by one
  common scale, keeping the PCA spectrum), Y the betas;
  an alpha per voxel by K-fold CV (himalaya ``RidgeCV``'s results, computed by
  :class:`brainldm.ridge.RidgeCVEngine`: X's folds are diagonalised once per job,
  not once per voxel batch); Pearson r on the test
  images, its one-sided p, Benjamini-Hochberg q and significance; maps as NIfTI.
* :func:`encode_banded` -- the combined z + zc model (himalaya's banded ridge over a
  fixed grid of band weights, computed with the same engine: each weight's folds
  diagonalised once per job), its split scores and the unique variance of each band,
  thresholded by the joint model's FDR.
* :func:`map_best_unet_layer` -- per denoising stage, the U-Net block whose model predicts
  each significant voxel best, as a categorical NIfTI with its label table.
* :func:`summarize_encoding_by_roi` -- mean r and fraction of FDR-significant voxels per ``streams``
  label, as TSV.

Voxels are fitted in batches of ``n_targets_batch``: only one batch of betas and of
predictions is in memory at a time, beside the per-voxel vectors (r, R^2, alpha...) and
the folds' decompositions (independent of the number of voxels).
Every workflow-facing function takes input paths, output paths and a settings dict
(``config["encoding"]``, completed and checked by :func:`brainldm.config.section_settings`).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import h5py
import nibabel as nib
import numpy as np

from .config import section_settings
from .files import atomic_path
from .nsd.layout import STREAMS_LABELS
from .nsd.roi_betas import RoiBetas
from .reduced import ReducedFeature
from .device import himalaya_backend
from .ridge import RidgeCVEngine, Standardizer, check_finite
from .stats import VoxelStats, pearson_r, r2_score, r2_score_split, voxel_stats
from .volume import save_map

log = logging.getLogger(__name__)

__all__ = [
    "FEATURE_MAPS",
    "banded_map_names",
    "band_weights",
    "EncodingInputError",
    "Design",
    "load_design",
    "ridge_encoding",
    "banded_encoding",
    "encode_feature",
    "encode_banded",
    "map_best_unet_layer",
    "summarize_encoding_by_roi",
]

#: Keys of ``config["encoding"]`` that the workflow reads (which ROI), not the models.
WORKFLOW_KEYS = ("roi",)

#: Maps written by :func:`encode_feature` (keys of its ``out_maps``).
FEATURE_MAPS = ("r", "p", "q", "significant", "alpha")


class EncodingInputError(ValueError):
    """An input file of an encoding model is inconsistent (names the file and what is wrong)."""


def banded_map_names(bands: Sequence[str]) -> tuple[str, ...]:
    """Maps written by :func:`encode_banded` for bands ``bands`` (keys of its ``out_maps``)."""
    return ("r", "q", "significant", *(f"unique_{b}" for b in bands), *(f"split_{b}" for b in bands))


# --------------------------------------------------------------------------- inputs


@dataclass
class Design:
    """Training and test design of one subject and feature(s), with lazy betas."""

    x_train: list  # per band: (n_train_trials, k) float32, centred and scaled on the training trials
    x_test: list  # per band: (n_test, k) float32, with the training statistics
    betas: RoiBetas
    feature_paths: list = field(default_factory=list)

    @property
    def voxel_index(self) -> np.ndarray:
        return self.betas.voxel_index


def _rows_of(ids: np.ndarray, wanted: np.ndarray, path, what: str) -> np.ndarray:
    """Row of each wanted 0-based 73k id among ``ids``; an error names the missing ids and the file."""
    ids = np.asarray(ids)
    order = np.argsort(ids, kind="stable")
    pos = np.clip(np.searchsorted(ids[order], wanted), 0, max(len(ids) - 1, 0))
    found = (ids[order][pos] == wanted) if len(ids) else np.zeros(len(wanted), bool)
    if not found.all():
        missing = np.unique(np.asarray(wanted)[~found])
        raise EncodingInputError(
            f"{path}: no {what} feature row for 73k image ids {missing[:10].tolist()} "
            f"({len(missing)} id(s) of the betas file missing)"
        )
    return order[pos]


def load_design(betas_path, feature_paths: Sequence) -> Design:
    """Training and test feature matrices of the betas file's trials, one per band.

    Parameters
    ----------
    betas_path : path
        Ingestion betas (``train/nsd_ids`` per trial, ``test/nsd_ids`` per image, ``voxel_index``...).
    feature_paths : sequence of path
        PCA feature files (:class:`brainldm.reduced.ReducedFeature`).

    Raises
    ------
    EncodingInputError
        A betas image id without a feature row (names the id and the file), a file
        without the expected datasets, NaN features.
    """
    betas = RoiBetas.read(betas_path, min_test_images=3)  # p-values of r need 3
    x_train, x_test = [], []
    for path in feature_paths:
        feature = ReducedFeature.read(path)
        train_rows = _rows_of(feature.train_ids, betas.train_ids, path, "training")
        test_rows = _rows_of(feature.test_ids, betas.test_ids, path, "test")
        train_images, test_images = feature.train, feature.test
        del feature
        check_finite(f"{path} train", train_images)
        check_finite(f"{path} test", test_images)
        xt = train_images[train_rows]  # one row per training trial
        scaler = Standardizer.fit_common_scale(xt)  # keeps the PCA spectrum (see its docstring)
        x_train.append(scaler.transform(xt))
        x_test.append(scaler.transform(test_images[test_rows]))
        del xt, train_images, test_images
    return Design(x_train, x_test, betas, [os.fspath(p) for p in feature_paths])


# --------------------------------------------------------------------------- models


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield start, min(start + size, n)


def _read_columns(data, start: int, stop: int, label: str) -> np.ndarray:
    block = np.asarray(data[:, start:stop], dtype=np.float32)
    check_finite(f"{label} (voxels {start}-{stop})", block)
    return block


def _engine(x_train, x_test, s: Mapping, backend: str, overwrite_x: bool = False) -> RidgeCVEngine:
    """The folds of one design diagonalised once for all voxel batches; X as the caller scaled it."""
    return RidgeCVEngine(x_train, x_test, s["alphas"], cv=s["cv"], backend=backend, standardize=False,
                         overwrite_x=overwrite_x)


def _defined(prediction: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Voxels whose correlation is defined: neither the prediction nor the measurement is constant."""
    return (np.ptp(prediction, axis=0) > 0) & (np.ptp(measured, axis=0) > 0)


@dataclass
class EncodingResult:
    """Per-voxel results of one ridge encoding model."""

    stats: VoxelStats
    r2: np.ndarray
    best_alpha: np.ndarray
    cv_score: np.ndarray
    alpha_at_edge: np.ndarray
    backend: str


def ridge_encoding(x_train, y_train, x_test, y_test, settings: Mapping | None = None) -> EncodingResult:
    """Voxel-wise ridge (alpha per voxel by CV) fitted batch by batch; statistics on the test set.

    The results are himalaya ``RidgeCV(alphas, cv, fit_intercept=True,
    solver_params={"local_alpha": True})``'s on X as given, fitted batch by batch, but
    X's folds are diagonalised once (:class:`brainldm.ridge.RidgeCVEngine`, before any
    betas are read) and each batch only costs matrix products against them. Each
    batch's test predictions are scored (Pearson r, R^2) and dropped.

    Parameters
    ----------
    x_train, x_test : numpy.ndarray
        ``(n_train, k)``, ``(n_test, k)``; centred and scaled by the caller (see :func:`load_design`).
    y_train, y_test : array-like
        ``(n_train, n_voxels)``, ``(n_test, n_voxels)``: arrays or HDF5 datasets, read one
        batch of columns at a time.
    settings : mapping
        ``alphas``, ``cv``, ``backend``, ``n_targets_batch``, ``fdr_q`` (``config["encoding"]``, defaults from the schema).
    """
    s = section_settings("encoding", settings, ignore=WORKFLOW_KEYS)
    if len(x_train) != y_train.shape[0]:
        raise EncodingInputError(f"X has {len(x_train)} training rows but the betas have {y_train.shape[0]}")
    if len(x_test) != y_test.shape[0]:
        raise EncodingInputError(f"X has {len(x_test)} test rows but the betas have {y_test.shape[0]}")
    n_vox = y_train.shape[1]
    if n_vox == 0:
        raise EncodingInputError("the voxel mask selects no voxel")
    engine = _engine(x_train, x_test, s, s["backend"])
    name = engine.backend_name
    r = np.zeros(n_vox)
    r2 = np.zeros(n_vox)
    defined = np.zeros(n_vox, bool)
    best = np.zeros(n_vox)
    cv_score = np.zeros(n_vox)
    for start, stop in _batches(n_vox, s["n_targets_batch"]):
        y = _read_columns(y_train, start, stop, "train betas")
        fit = engine.fit(y, f"train betas (voxels {start}-{stop})")
        del y
        prediction, best[start:stop], cv_score[start:stop] = fit.predictions, fit.best_alphas, fit.cv_scores
        del fit
        measured = _read_columns(y_test, start, stop, "test betas")
        r[start:stop] = pearson_r(prediction, measured)
        r2[start:stop] = r2_score(prediction, measured)
        defined[start:stop] = _defined(prediction, measured)
        del prediction, measured
        log.info("ridge (%s): voxels %d-%d of %d", name, start, stop, n_vox)
    stats = voxel_stats(r, len(x_test), s["fdr_q"], defined)
    return EncodingResult(stats, r2, best, cv_score, engine.at_edge(best), name)


@dataclass
class BandedResult:
    """Per-voxel results of a banded (joint) model and of each band alone."""

    bands: list
    stats: VoxelStats  # of the joint model
    r2_joint: np.ndarray
    r2_alone: np.ndarray  # (n_bands, n_voxels): each band's own RidgeCV model
    r_alone: np.ndarray  # (n_bands, n_voxels)
    split_r2: np.ndarray  # (n_bands, n_voxels): himalaya's product-measure split of the joint R^2
    unique: np.ndarray  # (n_bands, n_voxels): R^2_joint - R^2 of the other band alone
    best_alpha: np.ndarray
    deltas: np.ndarray  # (n_bands, n_voxels): log band scalings chosen by the random search
    backend: str


def band_weights(n_ratios: int, max_ratio: float) -> np.ndarray:
    """Weights ``(w, 1 - w)`` of two bands whose ratio ``w / (1 - w)`` spans a log grid.

    The ratios run from ``1 / max_ratio`` to ``max_ratio`` (one ratio, 1:1, when
    ``n_ratios`` is 1); each row sums to 1. Shape ``(n_ratios, 2)``.
    """
    exponents = np.linspace(-1.0, 1.0, n_ratios) if n_ratios > 1 else np.zeros(1)
    ratio = float(max_ratio) ** exponents
    first = ratio / (1.0 + ratio)
    return np.stack([first, 1.0 - first], axis=1)


def banded_encoding(xs_train: Sequence, y_train, xs_test: Sequence, y_test, bands: Sequence[str],
                    settings: Mapping | None = None, alone: Sequence[Mapping] | None = None) -> BandedResult:
    """Joint banded ridge of two feature bands, their split scores and unique variances.

    The joint model is himalaya's ``BandedRidgeCV(groups="input", solver="random_search",
    fit_intercept=True)`` given a fixed list of band weights (:func:`band_weights`: two
    bands have one free weight, so a deterministic log grid of ratios replaces random
    Dirichlet samples): per voxel, the band weights ``(w, 1 - w)`` and the alpha with the
    best K-fold CV score (a later weight must beat the best so far by float32's epsilon,
    as in himalaya), refitted on all training rows. It is computed without himalaya's
    solver: for each weight, the bands scaled by ``sqrt(w)`` are one design whose folds
    :class:`brainldm.ridge.RidgeCVEngine` diagonalises once for all voxel batches
    (himalaya repeats an SVD of every fold, for every weight, in every voxel batch: about
    75 batches per brain). The betas are read once per weight; memory holds one weight's
    decompositions and one voxel batch. ``tests/test_encoding.py`` compares the results
    with himalaya's.

    Unique variance -- the choice. The unique variance of band A is
    ``R^2(A + B) - R^2(B alone)`` (variance partitioning, Lescroart et al. 2015; de Heer et
    al. 2017), on the test images, where "B alone" is B's own RidgeCV model fitted on the
    same voxel batch (himalaya ``RidgeCV``'s results, from one
    :class:`brainldm.ridge.RidgeCVEngine` per band) and ``R^2`` is the coefficient of
    determination. It is the variance that only A explains. himalaya's split scores
    (``r2_score_split`` of each band's part of the joint prediction, the product measure)
    are written too, as ``split_r2``: they sum to the joint R^2 but they *share out* the
    variance both bands explain in proportion to each band's prediction, so a band that
    carries no unique signal but correlates with the other still gets a large split
    score; they answer "how much of the joint prediction comes from each band", not
    "what does each band add". The split uses test-centred targets and band
    predictions, as ``r2_score_split`` assumes.

    Parameters
    ----------
    xs_train, xs_test : sequence of numpy.ndarray
        Two bands, each centred and scaled on the training rows.
    y_train, y_test : array-like
        Betas (arrays or HDF5 datasets), read one batch of columns at a time.
    bands : sequence of str
        The bands' names (e.g. ``["z", "zc_s0.8_t1"]``).
    settings : mapping
        ``config["encoding"]``, whole or in part (defaults from the schema).
    alone : sequence of two mappings, optional
        Per band, the test ``r2`` and ``r`` of that band's own model over all voxels (the
        :func:`encode_feature` results, fitted with the same settings); fitted here when None.
    """
    s = section_settings("encoding", settings, ignore=WORKFLOW_KEYS)
    bands = list(bands)
    if len(bands) != 2 or len(xs_train) != 2 or len(xs_test) != 2:
        raise ValueError(f"the banded model takes exactly two bands, got {bands}")
    for x, label in ((xs_train, "training"), (xs_test, "test")):
        rows = {len(b) for b in x}
        if len(rows) != 1:
            raise EncodingInputError(f"bands {bands} have different numbers of {label} rows: {[len(b) for b in x]}")
    if len(xs_train[0]) != y_train.shape[0] or len(xs_test[0]) != y_test.shape[0]:
        raise EncodingInputError(
            f"bands have {len(xs_train[0])} training / {len(xs_test[0])} test rows, betas "
            f"{y_train.shape[0]} / {y_test.shape[0]}"
        )
    n_vox = y_train.shape[1]
    if n_vox == 0:
        raise EncodingInputError("the voxel mask selects no voxel")
    n_test = len(xs_test[0])
    name = himalaya_backend(s["backend"])
    width = xs_train[0].shape[1]
    groups = [slice(0, width), slice(width, width + xs_train[1].shape[1])]
    out = {key: np.zeros(n_vox) for key in ("r", "r2", "alpha")}
    best_score = np.full(n_vox, -np.inf)
    defined = np.zeros(n_vox, bool)
    r2_alone, r_alone, split, deltas = (np.zeros((2, n_vox)) for _ in range(4))
    epsilon = np.finfo(np.float32).eps  # himalaya's margin for a later band weight to win
    weights = band_weights(s["banded_n_ratios"], s["banded_max_ratio"])
    banded = {"alphas": s["banded_alphas"], "cv": s["cv"]}
    for k, weight in enumerate(weights):
        root = np.sqrt(weight).astype(np.float32)
        started = time.perf_counter()
        engine = _engine(np.hstack([xs_train[0] * root[0], xs_train[1] * root[1]], dtype=np.float32),
                         np.hstack([xs_test[0] * root[0], xs_test[1] * root[1]], dtype=np.float32), banded, name,
                         overwrite_x=True)  # the scaled bands are made for this engine alone
        log.info("banded ridge %s (%s): weight %d of %d (%.3g, %.3g): folds diagonalised in %.1f s", bands, name,
                 k + 1, len(weights), *weight, time.perf_counter() - started)
        for start, stop in _batches(n_vox, s["n_targets_batch"]):
            y = _read_columns(y_train, start, stop, "train betas")
            fit = engine.fit(y, f"train betas (voxels {start}-{stop})", groups=groups)
            del y
            better = fit.cv_scores > best_score[start:stop] + epsilon
            if better.any():
                index = start + np.flatnonzero(better)
                measured = _read_columns(y_test, start, stop, "test betas")[:, better]
                joint, parts = fit.predictions[:, better], fit.split[:, :, better]
                best_score[index] = fit.cv_scores[better]
                out["alpha"][index] = fit.best_alphas[better]
                deltas[:, index] = np.log(weight[:, None] / fit.best_alphas[better][None, :])
                out["r"][index] = pearson_r(joint, measured)
                out["r2"][index] = r2_score(joint, measured)
                defined[index] = _defined(joint, measured)
                parts -= parts.mean(axis=1, keepdims=True)
                split[:, index] = r2_score_split(measured - measured.mean(axis=0, dtype=np.float64), parts)
                del measured, joint, parts
            del fit
            log.info("banded ridge %s (%s): weight %d of %d, voxels %d-%d of %d", bands, name, k + 1, len(weights),
                     start, stop, n_vox)
        del engine
    if alone is None:
        for b in range(2):
            engine = _engine(xs_train[b], xs_test[b], s, name)
            for start, stop in _batches(n_vox, s["n_targets_batch"]):
                prediction = engine.fit(_read_columns(y_train, start, stop, "train betas"),
                                        f"train betas (voxels {start}-{stop})").predictions
                measured = _read_columns(y_test, start, stop, "test betas")
                r2_alone[b, start:stop] = r2_score(prediction, measured)
                r_alone[b, start:stop] = pearson_r(prediction, measured)
                del prediction, measured
            del engine
    else:
        for b in range(2):
            for key, target in (("r2", r2_alone), ("r", r_alone)):
                values = np.asarray(alone[b][key], dtype=np.float64)
                if values.shape != (n_vox,):
                    raise EncodingInputError(f"band {bands[b]!r}: its own model's {key} has shape {values.shape}, "
                                             f"expected ({n_vox},)")
                target[b] = values
    stats = voxel_stats(out["r"], n_test, s["fdr_q"], defined)
    unique = np.stack([out["r2"] - r2_alone[1], out["r2"] - r2_alone[0]])
    return BandedResult(bands, stats, out["r2"], r2_alone, r_alone, split, unique, out["alpha"], deltas, name)


def _check_out_maps(out_maps: Mapping, names: Sequence[str], where: str) -> None:
    missing = [n for n in names if n not in out_maps]
    extra = [n for n in out_maps if n not in names]
    if missing or extra:
        raise ValueError(f"{where}: out_maps must have the keys {list(names)}; missing {missing}, unknown {extra}")


def _check_reference(reference_path, design: Design) -> None:
    reference, betas = nib.load(os.fspath(reference_path)), design.betas
    if betas.volume_shape is not None and tuple(reference.shape[:3]) != tuple(betas.volume_shape):
        raise EncodingInputError(
            f"{reference_path}: volume shape {reference.shape[:3]} differs from the betas' {betas.volume_shape} "
            f"({betas.path})"
        )
    if not np.allclose(reference.affine, betas.affine, atol=1e-4):
        raise EncodingInputError(f"{reference_path}: affine differs from the betas' ({betas.path})")


def _write_vectors(h5: h5py.File, design: Design, vectors: Mapping[str, np.ndarray]) -> None:
    for name, values in vectors.items():
        h5.create_dataset(name, data=values, track_times=False)
    betas = design.betas
    h5.create_dataset("voxel_index", data=betas.voxel_index, track_times=False)
    h5.create_dataset("affine", data=betas.affine, track_times=False)
    if betas.volume_shape is not None:
        h5.attrs["volume_shape"] = betas.volume_shape
    h5.attrs["voxel_index"] = "flat C-order index into the (X, Y, Z) volume"
    h5.attrs["betas"] = betas.path
    h5.attrs["n_train_trials"] = len(betas.train_ids)
    h5.attrs["n_test"] = len(betas.test_ids)


def encode_feature(betas_path, feature_path, reference_path, out_h5, out_maps: Mapping, settings: Mapping | None,
                   feature: str | None = None) -> None:
    """Fit and evaluate the encoding model of one feature for one subject; write vectors and maps.

    Parameters
    ----------
    betas_path : path
        ``results/<subject>/betas/<roi>.h5`` (the whole-brain ROI).
    feature_path : path
        ``results/<subject>/features_pca/<feature>.h5``.
    reference_path : path
        A NIfTI of the subject's space for the maps' grid, affine and header
        (``<nsd_root>/nsddata/ppdata/<subject>/func1pt8mm/roi/streams.nii.gz``).
    out_h5 : path
        HDF5 of per-voxel vectors: ``r``, ``p``, ``q``, ``significant``, ``r2`` (test R^2),
        ``best_alpha``, ``cv_score``, ``alpha_at_edge``, ``voxel_index``, ``affine``;
        attributes ``feature``, ``n_test``, ``fdr_q``, ``settings``...
    out_maps : mapping
        Map name -> NIfTI path for every name of :data:`FEATURE_MAPS`: ``r`` (float32, 0
        outside), ``p`` and ``q`` (float32, 1 outside), ``significant`` (uint8),
        ``alpha`` (float32, 0 outside).
    settings : mapping
        ``config["encoding"]``, whole or in part (defaults from the schema).
    feature : str, optional
        The feature's name (default: the file's stem).
    """
    s = section_settings("encoding", settings, ignore=WORKFLOW_KEYS)
    _check_out_maps(out_maps, FEATURE_MAPS, "encode_feature")
    feature = feature or os.path.basename(os.fspath(feature_path)).removesuffix(".h5")
    design = load_design(betas_path, [feature_path])
    _check_reference(reference_path, design)
    log.info("%s: %d training trials x %d features -> %d voxels; %d test images", feature,
             len(design.betas.train_ids), design.x_train[0].shape[1], design.betas.n_voxels, len(design.betas.test_ids))
    with design.betas.betas() as (y_train, y_test):
        result = ridge_encoding(design.x_train[0], y_train, design.x_test[0], y_test, s)
    st = result.stats
    log.info("%s: median r %.3f, %d of %d voxels FDR-significant (q < %g); %.1f%% of alphas at the grid's edge",
             feature, np.median(st.r), st.significant.sum(), len(st.r), s["fdr_q"], 100 * result.alpha_at_edge.mean())
    with atomic_path(out_h5) as tmp, h5py.File(tmp, "w") as h5:
        _write_vectors(h5, design, {
            "r": st.r, "p": st.p, "q": st.q, "significant": st.significant, "r2": result.r2,
            "best_alpha": result.best_alpha, "cv_score": result.cv_score, "alpha_at_edge": result.alpha_at_edge,
        })
        h5.attrs.update({"feature": feature, "model": "ridge", "features": design.feature_paths[0],
                         "n_features": design.x_train[0].shape[1], "fdr_q": s["fdr_q"], "backend": result.backend,
                         "settings": json.dumps(s, sort_keys=True),
                         "p": "one-sided, r against independent Gaussian vectors of length n_test (t, n_test - 2 df)",
                         "q": "Benjamini-Hochberg adjusted p over all voxels"})
    index = design.voxel_index
    save_map(st.r.astype(np.float32), index, reference_path, out_maps["r"], 0, f"{feature} test r")
    save_map(st.p.astype(np.float32), index, reference_path, out_maps["p"], 1, f"{feature} one-sided p")
    save_map(st.q.astype(np.float32), index, reference_path, out_maps["q"], 1, f"{feature} BH q")
    save_map(st.significant, index, reference_path, out_maps["significant"], 0, f"{feature} q<{s['fdr_q']:g}")
    save_map(result.best_alpha.astype(np.float32), index, reference_path, out_maps["alpha"], 0, f"{feature} alpha")


def encode_banded(betas_path, feature_paths: Mapping, reference_path, out_h5, out_maps: Mapping,
                  settings: Mapping | None, alone_paths: Mapping | None = None) -> None:
    """Fit the joint banded model of two features (z and one zc) and write its maps.

    Parameters
    ----------
    betas_path : path
        Whole-brain betas of the subject.
    feature_paths : mapping
        Band name -> PCA feature file, two bands in order, e.g.
        ``{"z": ".../z.h5", "zc": ".../zc_s0.8_t1.h5"}``. The map names use these keys.
    reference_path : path
        NIfTI of the subject's space (its ``streams.nii.gz``).
    out_h5 : path
        HDF5: ``r``, ``p``, ``q``, ``significant`` (joint model), ``r2`` (joint test R^2),
        ``r2_alone/<band>``, ``r_alone/<band>``, ``split/<band>`` (himalaya's split R^2),
        ``unique/<band>`` (unthresholded), ``best_alpha``, ``deltas/<band>``, ``voxel_index``.
    out_maps : mapping
        Map name -> NIfTI for every name of :func:`banded_map_names`: ``r``, ``q``,
        ``significant`` of the joint model; ``unique_<band>`` and ``split_<band>`` set to 0
        where the joint model is not FDR-significant.
    settings : mapping
        ``config["encoding"]``.
    alone_paths : mapping, optional
        Band name -> :func:`encode_feature` result of that band alone (same betas and
        settings): its test ``r2`` and ``r`` are used instead of refitting it.
    """
    s = section_settings("encoding", settings, ignore=WORKFLOW_KEYS)
    bands = list(feature_paths)
    if len(bands) != 2:
        raise ValueError(f"encode_banded takes two feature files (e.g. z and a zc), got {bands}")
    _check_out_maps(out_maps, banded_map_names(bands), "encode_banded")
    design = load_design(betas_path, [feature_paths[b] for b in bands])
    _check_reference(reference_path, design)
    alone = None
    if alone_paths is not None:
        alone = []
        for band in bands:
            res = _read_result(alone_paths[band], ("r", "r2"))
            if not np.array_equal(res["voxel_index"], design.voxel_index):
                raise EncodingInputError(f"{alone_paths[band]}: voxels differ from those of {betas_path}")
            alone.append(res)
    with design.betas.betas() as (y_train, y_test):
        result = banded_encoding(design.x_train, y_train, design.x_test, y_test, bands, s, alone)
    st = result.stats
    sig = st.significant
    log.info("banded %s: %d of %d voxels FDR-significant; mean unique R^2 there %s", bands, sig.sum(), len(sig),
             {b: float(result.unique[k][sig].mean()) if sig.any() else 0.0 for k, b in enumerate(bands)})
    with atomic_path(out_h5) as tmp, h5py.File(tmp, "w") as h5:
        vectors = {"r": st.r, "p": st.p, "q": st.q, "significant": sig, "r2": result.r2_joint,
                   "best_alpha": result.best_alpha}
        for k, band in enumerate(bands):
            vectors.update({f"r2_alone/{band}": result.r2_alone[k], f"r_alone/{band}": result.r_alone[k],
                            f"split/{band}": result.split_r2[k], f"unique/{band}": result.unique[k],
                            f"deltas/{band}": result.deltas[k]})
        _write_vectors(h5, design, vectors)
        h5.attrs.update({
            "feature": "+".join(bands), "model": "banded", "bands": bands,
            "features": json.dumps(dict(zip(bands, design.feature_paths))), "fdr_q": s["fdr_q"],
            "backend": result.backend, "settings": json.dumps(s, sort_keys=True),
            "unique": "R^2_joint - R^2 of the other band alone (test set); unthresholded",
            "split": "himalaya r2_score_split (product measure) of the joint model's split predictions",
        })
    index = design.voxel_index
    save_map(st.r.astype(np.float32), index, reference_path, out_maps["r"], 0, "joint r")
    save_map(st.q.astype(np.float32), index, reference_path, out_maps["q"], 1, "joint BH q")
    save_map(sig, index, reference_path, out_maps["significant"], 0, f"joint q<{s['fdr_q']:g}")
    for k, band in enumerate(bands):
        save_map(np.where(sig, result.unique[k], 0).astype(np.float32), index, reference_path,
                 out_maps[f"unique_{band}"], 0, f"unique R2 {band}, joint q<{s['fdr_q']:g}")
        save_map(np.where(sig, result.split_r2[k], 0).astype(np.float32), index, reference_path,
                 out_maps[f"split_{band}"], 0, f"split R2 {band}, joint q<{s['fdr_q']:g}")


_UNET_NAME = re.compile(r"^unet_(?P<block>.+)_t(?P<stage>[0-9.e+-]+)$")


def _read_result(path, datasets=("r", "significant")) -> dict:
    """The one reader of the encoding results (:func:`encode_feature`'s and :func:`encode_banded`'s files).

    ``datasets`` and ``voxel_index``, ``feature``, ``attrs``, and for a banded model ``unique``
    (band -> unique R^2 per voxel).
    """
    with h5py.File(path, "r") as h5:
        for name in (*datasets, "voxel_index"):
            if name not in h5:
                raise EncodingInputError(f"{path}: dataset {name!r} missing (not an encoding result?)")
        out = {name: h5[name][()] for name in (*datasets, "voxel_index")}
        out["feature"] = str(h5.attrs.get("feature", os.path.basename(os.fspath(path)).removesuffix(".h5")))
        out["attrs"] = dict(h5.attrs)
        if out["attrs"].get("model") == "banded":
            out["unique"] = {band: h5[f"unique/{band}"][()] for band in h5["unique"]}
    return out


def map_best_unet_layer(result_paths: Sequence, reference_path, out_map, out_labels, settings: Mapping | None = None,
                   labels: Sequence[str] | None = None) -> None:
    """The U-Net block that predicts each voxel best, at one denoising stage.

    For every voxel the block with the highest test r is chosen; the voxel gets label
    ``k`` (the k-th block, 1-based, in the order of ``result_paths`` = config order) if that
    block's model is FDR-significant there, 0 otherwise.

    Parameters
    ----------
    result_paths : sequence of path
        :func:`encode_feature` HDF5 results of the blocks at one stage, in config order.
    reference_path : path
        NIfTI of the subject's space.
    out_map : path
        Categorical NIfTI (uint8): 0 not significant, k = k-th block.
    out_labels : path
        TSV beside it: ``label``, ``name`` (block), ``feature``, ``n_voxels`` (label 0 first).
    settings : mapping, optional
        ``config["encoding"]`` (unused keys are ignored; kept for a uniform signature).
    labels : sequence of str, optional
        Block names; default parsed from each file's feature name ``unet_{block}_t{stage}``.
    """
    section_settings("encoding", settings, ignore=WORKFLOW_KEYS)
    if not result_paths:
        raise ValueError("map_best_unet_layer needs at least one result file")
    results = [_read_result(p) for p in result_paths]
    index = results[0]["voxel_index"]
    for path, res in zip(result_paths, results):
        if not np.array_equal(res["voxel_index"], index):
            raise EncodingInputError(f"{path}: voxels differ from those of {result_paths[0]}")
    if labels is None:
        labels = []
        for res in results:
            match = _UNET_NAME.match(res["feature"])
            labels.append(match.group("block") if match else res["feature"])
    if len(labels) != len(results):
        raise ValueError(f"{len(labels)} labels for {len(results)} result files")
    r = np.stack([res["r"] for res in results])
    significant = np.stack([res["significant"] for res in results]).astype(bool)
    best = np.argmax(r, axis=0)
    label = np.where(significant[best, np.arange(r.shape[1])], best + 1, 0).astype(np.uint8)
    save_map(label, index, reference_path, out_map, 0, "best U-Net block (0 = not significant)")
    counts = np.bincount(label, minlength=len(results) + 1)
    with atomic_path(out_labels) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["label", "name", "feature", "n_voxels"])
        writer.writerow([0, "not significant", "", int(counts[0])])
        for k, (name, res) in enumerate(zip(labels, results), start=1):
            writer.writerow([k, name, res["feature"], int(counts[k])])
    log.info("best layer: voxels per label %s", dict(zip(["none", *labels], counts.tolist())))


def summarize_encoding_by_roi(result_paths: Sequence, streams_path, out_tsv, settings: Mapping | None = None) -> None:
    """Mean r and fraction of FDR-significant voxels per ``streams`` label, per model.

    Parameters
    ----------
    result_paths : sequence of path
        HDF5 results of :func:`encode_feature` or :func:`encode_banded` (one subject).
    streams_path : path
        The subject's ``streams.nii.gz`` (labels -1 outside, 0 unlabelled, 1-7 streams).
    out_tsv : path
        One row per model and label (and ``all``): ``model``, ``label``, ``roi``,
        ``n_voxels``, ``n_significant``, ``fraction_significant``, ``mean_r``, ``median_r``,
        and for banded models ``mean_unique_<band>`` over the significant voxels.
    settings : mapping, optional
        ``config["encoding"]`` (unused; uniform signature).
    """
    section_settings("encoding", settings, ignore=WORKFLOW_KEYS)
    streams = np.asarray(nib.load(os.fspath(streams_path)).dataobj)
    rows = []
    columns = ["model", "label", "roi", "n_voxels", "n_significant", "fraction_significant", "mean_r", "median_r"]
    for path in result_paths:
        res = _read_result(path)
        index = res["voxel_index"]
        if index.size and index.max() >= streams.size:
            raise EncodingInputError(f"{path}: voxel indices outside the volume of {streams_path} {streams.shape}")
        labels = streams.reshape(-1)[index].astype(int)
        unique = res.get("unique", {})
        for label in [None, *sorted(np.unique(labels))]:
            sel = np.ones(len(labels), bool) if label is None else labels == label
            r, sig = res["r"][sel], res["significant"][sel].astype(bool)
            row = {
                "model": res["feature"], "label": "all" if label is None else label,
                "roi": "all" if label is None else STREAMS_LABELS.get(label, f"label{label}"),
                "n_voxels": int(sel.sum()), "n_significant": int(sig.sum()),
                "fraction_significant": float(sig.mean()) if sel.any() else float("nan"),
                "mean_r": float(r.mean()) if sel.any() else float("nan"),
                "median_r": float(np.median(r)) if sel.any() else float("nan"),
            }
            for band, values in unique.items():
                key = f"mean_unique_{band}"
                if key not in columns:
                    columns.append(key)
                row[key] = float(values[sel][sig].mean()) if sig.any() else float("nan")
            rows.append(row)
    with atomic_path(out_tsv) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, delimiter="\t", lineterminator="\n", restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
