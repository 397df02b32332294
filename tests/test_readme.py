"""The README's two set-up commands are the ones CI and users run."""

from __future__ import annotations

import re

from conftest import REPO


def _readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    quick_start = blocks[0]
    return [line for line in quick_start.splitlines() if line and not line.startswith("#")]


def test_readme_has_exactly_two_setup_commands():
    demo, tests = _readme_commands()
    assert "snakemake" in demo and "pytest" in tests
    assert all(command.startswith("python3 -m venv .venv && ") for command in (demo, tests))


def test_ci_runs_the_readme_test_command():
    _, tests = _readme_commands()
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert tests in ci
