"""The price of the paper's DAG (4 subjects, config.paper.yaml, SD 1.4) before anything runs; into the README.

The NSD tree and the model folder are those of ``tests/nsd_headers.py``: the paper's sizes in
the files a dry run reads (design file, responses, ROI volumes; SD 1.4's published configs), the
rest empty placeholders. ``brainldm-price`` runs the README's command on them, with the SLURM
profile, from a working copy of the repository (links), and the table goes into
``bench/results/paper_price.md`` and the README between its price markers;
``tests/test_price.py`` checks that the README's table is what this gives.

    .venv/bin/python bench/paper_price.py
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests"))

from nsd_headers import build_nsd_headers, build_sd14_configs  # noqa: E402

README = REPO / "README.md"
RESULT = REPO / "bench" / "results" / "paper_price.md"
BEGIN, END = "<!-- paper price: begin (bench/paper_price.py) -->", "<!-- paper price: end -->"
ARGUMENTS = ["--profile", "profiles/slurm", "--configfile", "config.paper.yaml", "--config", "nsd_root={nsd}",
             "model={model}"]
CHECKOUT = ("Snakefile", "rules", "workflow_scripts", "report", "envs", "profiles", "config.yaml", "config.paper.yaml")


def paper_price(folder: Path) -> str:
    """The price table of the paper's DAG, computed in ``folder``."""
    from brainldm.price import main

    nsd, model, work = folder / "nsd", folder / "stable-diffusion-v1-4", folder / "work"
    build_nsd_headers(nsd)
    build_sd14_configs(model)
    work.mkdir()
    for entry in CHECKOUT:
        (work / entry).symlink_to(REPO / entry)
    out = io.StringIO()
    previous = os.getcwd()
    try:
        os.chdir(work)
        with contextlib.redirect_stdout(out):
            status = main([a.format(nsd=nsd, model=model) for a in ARGUMENTS])
    finally:
        os.chdir(previous)
    if status != 0:
        raise RuntimeError(f"brainldm-price failed ({status})")
    return out.getvalue()


def readme_block(text: str) -> str:
    return text[text.index(BEGIN) + len(BEGIN):text.index(END)].strip("\n") + "\n"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        table = paper_price(Path(tmp))
    RESULT.write_text("# The paper's DAG priced before submission (`bench/paper_price.py`)\n\n" + table)
    text = README.read_text()
    start, stop = text.index(BEGIN) + len(BEGIN), text.index(END)
    README.write_text(text[:start] + "\n" + table + text[stop:])
    print(table)


if __name__ == "__main__":
    main()
