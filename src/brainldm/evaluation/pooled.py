"""Tables and figure over all subjects: the paper's Figure 5 and the community table."""

from __future__ import annotations

import logging
import os

from ..config import section_settings
from .plots import plot_identification
from .tables import community_header, paper_header, pooled_community, pooled_identification, read_table, write_table

log = logging.getLogger(__name__)


def evaluate_pooled(subjects: list[str], paper_paths: list, community_paths: list, n_samples: int, settings: dict,
                    identification_path: str | os.PathLike, plot_path: str | os.PathLike,
                    community_path: str | os.PathLike) -> None:
    """Pool the per-subject tables of :func:`brainldm.evaluation.evaluate_subject`.

    Parameters
    ----------
    subjects : list of str
        In the order of ``paper_paths`` and ``community_paths``.
    paper_paths, community_paths : list of path
        Per-subject per-image tables.
    n_samples : int
        Samples of Xc and Xzc (named in the headers).
    settings : dict
        ``config["evaluation"]`` (``weights``).
    identification_path, plot_path, community_path : path
        Outputs: pooled identification TSV, its bar plot PNG, the community TSV.
    """
    if not (len(subjects) == len(paper_paths) == len(community_paths)):
        raise ValueError(f"{len(subjects)} subjects, {len(paper_paths)} identification and "
                         f"{len(community_paths)} community tables")
    settings = section_settings("evaluation", settings)
    paper = {s: read_table(p) for s, p in zip(subjects, paper_paths)}
    community = {s: read_table(p) for s, p in zip(subjects, community_paths)}
    for tables in (paper, community):
        sizes = {s: t["nsd_id"].nunique() for s, t in tables.items()}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"subjects were evaluated on different numbers of test images: {sizes}")
    identification = pooled_identification(paper)
    scope = f"pooled over {', '.join(subjects)}"
    header = paper_header(scope, n_samples, settings)
    header.insert(-1, "columns: each subject's mean over test images; mean and sem (standard error of the mean) "
                      "over subjects")
    write_table(identification, identification_path, header)
    plot_identification(identification, plot_path, settings["weights"] == "random")
    header = community_header(scope, settings)
    header.insert(-1, f"rows: each subject's mean over test images and samples, then the mean of the {len(subjects)} "
                      "subjects")
    write_table(pooled_community(community), community_path, header)
    log.info("pooled %d subjects: %s", len(subjects), identification.groupby("method")["mean"].mean().round(3).to_dict())
