"""Decoders: ridge regressions from an ROI's betas to a latent (paper section 3.3).

Trained on single trials, evaluated on the test images' repetition averages.
"""

from __future__ import annotations

import json
import logging

import numpy as np

from .config import section_settings
from .decoded import write_decoded_latent
from .feature_file import FeatureFile
from .files import rows_of_ids
from .nsd.roi_betas import RoiBetas
from .ridge import RowsOf, fit_predict
from .stats import columnwise_correlation

log = logging.getLogger(__name__)


def decode_latent(betas_path, feature_path, out_path, decoding: dict, subject: str, roi: str, target: str) -> None:
    """Fit the decoder of one target from one ROI and write its test predictions.

    Parameters
    ----------
    betas_path : path
        ROI betas from ingestion (``train/betas``, ``test/betas``, ids).
    feature_path : path
        The target feature (a :mod:`brainldm.feature_file` file).
    out_path : path
        Output, a :mod:`brainldm.decoded` file: ``predictions`` (n_test, d), ``nsd_ids``, attr
        ``shape``, and ``best_alphas``, ``alpha_at_edge``, ``cv_scores``, ``corr_per_image``,
        ``corr_per_dimension``.
    decoding : dict
        ``config["decoding"]``, whole or in part: ``alphas``, ``cv``, ``backend``, ``n_targets_batch``.
    subject, roi, target : str
        Recorded in the output.
    """
    decoding = section_settings("decoding", decoding)
    betas = RoiBetas.read(betas_path)
    x_train, x_test = betas.arrays()
    train_ids, test_ids = betas.train_ids, betas.test_ids
    feature = FeatureFile.read(feature_path)
    shape = feature.shape
    with feature.features() as data:
        y_train = RowsOf(data, rows_of_ids(feature.nsd_ids, train_ids, feature_path))
        test_rows = rows_of_ids(feature.nsd_ids, test_ids, feature_path)
        y_test = np.asarray(data[test_rows], np.float32)  # ids sorted and unique: increasing rows
        log.info("%s %s -> %s: %d train trials x %d voxels -> %d dims; %d test images",
                 subject, roi, target, len(x_train), x_train.shape[1], data.shape[1], len(x_test))
        fit = fit_predict(x_train, y_train, x_test, decoding["alphas"], cv=decoding["cv"],
                          backend=decoding["backend"], n_targets_batch=decoding["n_targets_batch"])
    per_image = columnwise_correlation(fit.predictions, y_test, axis=1)
    per_dim = columnwise_correlation(fit.predictions, y_test, axis=0)
    log.info("%s %s: median test r per image %.3f, per dimension %.3f; %.1f%% of alphas at the grid's edge",
             subject, target, np.median(per_image), np.median(per_dim), 100 * fit.alpha_at_edge.mean())
    write_decoded_latent(
        out_path, fit.predictions, test_ids, shape,
        datasets={"best_alphas": fit.best_alphas, "alpha_at_edge": fit.alpha_at_edge, "cv_scores": fit.cv_scores,
                  "corr_per_image": per_image, "corr_per_dimension": per_dim},
        attrs={"subject": subject, "roi": roi, "target": target, "decoding": json.dumps(decoding, sort_keys=True),
               "alphas": np.asarray(decoding["alphas"], float), "nsd_ids": "0-based 73k ids of the test images"},
    )
