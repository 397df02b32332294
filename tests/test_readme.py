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


def _layout_block() -> str:
    readme = (REPO / "README.md").read_text()
    return re.search(r"## Layout\n\n```\n(.*?)```", readme, re.S).group(1)


def test_layout_names_every_top_level_entry_and_module():
    import subprocess

    block = _layout_block()
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    top = {path.split("/")[0] for path in tracked.splitlines()} - {".gitignore", "README.md"}
    starts = {line.split()[0].split("/")[0] for line in block.splitlines() if line and not line[0].isspace()}
    assert top <= starts, f"not in the README's layout: {sorted(top - starts)}"
    src = REPO / "src" / "brainldm"
    modules = {p.stem for p in src.rglob("*.py") if p.name != "__init__.py"}
    modules |= {p.name for p in src.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    named = set(re.findall(r"[a-z_]+", block))
    assert modules <= named, f"modules the layout does not name: {sorted(modules - named)}"


def test_layout_layers_are_the_import_tests_layers():
    from test_layers import LAYERS

    layers, current = {}, None
    for line in _layout_block().splitlines():
        match = re.match(r"  (\d)\s+(.*)", line)
        if match:
            current = int(match.group(1))
            text = match.group(2)
        elif current is not None and line.startswith(" " * 10):
            text = line.strip()
        else:
            current = None
            continue
        for piece in re.split(r"[,;]", re.sub(r"\([^)]*\)", "", text)):
            name = re.match(r"\s*([a-z_]+)", piece)
            if name and name.group(1) in LAYERS:
                layers[name.group(1)] = current
    assert layers == LAYERS
