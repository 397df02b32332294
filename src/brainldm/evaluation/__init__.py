"""Evaluation of reconstructions: the paper's identification protocol and the community metric table.

Public API: :func:`evaluate_subject` (per-image scores of one subject),
:func:`evaluate_pooled` (tables and Figure 5 over subjects), the metric
functions and :func:`load_network`.
"""

from .identification import correlation_matrix, sample_mean_identification, two_way_identification
from .pooled import evaluate_pooled
from ..lazy import lazy_getattr
from .protocols import RANDOM_NOTICE

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

# The networks need torch; the CPU rules (evaluate_pooled) import this package without it.
_LAZY = {
    "correlation_distance": "metrics",
    "pixcorr": "metrics",
    "ssim": "metrics",
    "EvaluationInputError": "images",
    "WeightsError": "nets",
    "load_network": "nets",
    "evaluate_subject": "subject",
}

__getattr__ = lazy_getattr(__name__, _LAZY)
