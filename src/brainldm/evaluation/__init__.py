"""Evaluation of reconstructions: the paper's identification protocol and the community metric table.

Public API: :func:`evaluate_subject` (per-image scores of one subject),
:func:`evaluate_pooled` (tables and Figure 5 over subjects), the metric
functions and :func:`load_network`.
"""

from .identification import correlation_matrix, sample_mean_identification, two_way_identification
from .images import EvaluationInputError
from .metrics import correlation_distance, pixcorr, ssim
from .nets import RANDOM_NOTICE, WeightsError, load_network
from .pooled import evaluate_pooled
from .subject import evaluate_subject

__all__ = [
    "RANDOM_NOTICE",
    "EvaluationInputError",
    "WeightsError",
    "correlation_distance",
    "correlation_matrix",
    "evaluate_pooled",
    "evaluate_subject",
    "load_network",
    "pixcorr",
    "sample_mean_identification",
    "ssim",
    "two_way_identification",
]
