"""Logging set-up shared by the workflow scripts."""

from __future__ import annotations

import logging
import sys
import warnings


def setup_logging(path, level: int = logging.INFO) -> logging.Logger:
    """Send log records, warnings and an uncaught exception's traceback to ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        The job's log file (``snakemake.log[0]``).
    level : int
        Logging level of the root logger.

    Returns
    -------
    logging.Logger
        The ``brainldm`` logger.
    """
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler, logging.StreamHandler(sys.stderr)]
    root.setLevel(level)
    logging.captureWarnings(True)
    warnings.simplefilter("default")

    def log_uncaught(exc_type, exc, tb):
        logging.getLogger("brainldm").critical("job failed: %s", exc, exc_info=(exc_type, exc, tb))

    sys.excepthook = log_uncaught
    return logging.getLogger("brainldm")
