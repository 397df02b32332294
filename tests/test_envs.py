"""The conda environments of the rules (envs/*.yaml) parse and agree with pyproject.toml.

What "agree" means here. Every env installs brainldm itself (`pip: -e ../`, the repository
holding envs/), and pip then installs whatever pyproject.toml's dependencies still lack. The
packages an env lists explicitly are installed first (from conda-forge where they are conda
packages), so each one must carry exactly pyproject's specifier: a looser spec lets conda pick a
version pip then replaces or rejects, a different pin makes the env unsolvable. So:

* every package an env lists is a pyproject dependency (besides `python` and `pip`), with the
  same specifier set;
* every pyproject dependency is listed by at least one env, except the tools that run the
  workflow on the login node (snakemake and its SLURM plugin), which no job env needs;
* each env's `python` admits only versions that `requires-python` admits.

Specifiers are read from the files, never written here: a new pin in pyproject.toml (torch, say)
fails this test until the envs follow it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from conftest import REPO

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli", reason="reading pyproject.toml on Python 3.10 needs tomli")

ENV_FILES = sorted((REPO / "envs").glob("*.yaml"))
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
# Run the workflow itself (login node); jobs do not import them.
WORKFLOW_TOOLS = {"snakemake", "snakemake-executor-plugin-slurm"}
# Conda package names that differ from the PyPI name of the same project.
CONDA_TO_PYPI = {"pytorch": "torch"}


def _requirement(spec: str, where: str) -> Requirement:
    try:
        requirement = Requirement(spec)
    except InvalidRequirement as error:
        raise AssertionError(f"{where}: cannot parse {spec!r} (write pip-style specs, '==' not '='): {error}")
    assert not requirement.url and not requirement.marker, f"{where}: {spec!r}: URLs and markers are not compared"
    return requirement


def _name(requirement: Requirement) -> str:
    name = canonicalize_name(requirement.name)
    return CONDA_TO_PYPI.get(name, name)


def _env_packages(path: Path) -> tuple[dict[str, SpecifierSet], list[str]]:
    """The packages ``path`` lists (conda and pip) with their specifiers, and its `-e` paths."""
    env = yaml.safe_load(path.read_text())
    assert isinstance(env, dict) and isinstance(env.get("dependencies"), list), f"{path.name}: no dependencies list"
    assert isinstance(env.get("channels"), list) and env["channels"], f"{path.name}: no channels"
    packages, editables = {}, []

    def add(spec: str, where: str) -> None:
        requirement = _requirement(spec, where)
        name = _name(requirement)
        assert name not in packages, f"{where}: {name} listed twice"
        packages[name] = requirement.specifier

    for entry in env["dependencies"]:
        if isinstance(entry, str):
            add(entry, f"{path.name} (conda)")
        else:
            assert isinstance(entry, dict) and list(entry) == ["pip"], f"{path.name}: unexpected entry {entry!r}"
            for spec in entry["pip"]:
                spec = spec.split("#")[0].strip()
                if spec.startswith("-e "):
                    editables.append(spec[3:].strip())  # a path, maybe with [extras]
                else:
                    add(spec, f"{path.name} (pip)")
    return packages, editables


def _pyproject(groups=("dependencies", "gpu")) -> dict[str, SpecifierSet]:
    """pyproject's requirements: its dependencies and/or optional groups (by name)."""
    specs = [spec for group in groups
             for spec in (PYPROJECT["dependencies"] if group == "dependencies"
                          else PYPROJECT["optional-dependencies"][group])]
    requirements = [_requirement(spec, "pyproject.toml") for spec in specs]
    return {_name(r): r.specifier for r in requirements}


def _rule_envs() -> dict[str, str]:
    """Rule name -> the env file its ``conda:`` directive names (from rules/*.smk)."""
    envs = {}
    for path in sorted((REPO / "rules").glob("*.smk")):
        rule = None
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            if line.startswith("rule "):
                rule = line.split()[1].rstrip(":")
            elif line.strip() == "conda:" and rule:
                envs[rule] = Path(lines[number + 1].strip().strip('"')).name
    return envs


def test_there_are_env_files():
    assert {path.name for path in ENV_FILES} >= {"cpu.yaml", "gpu.yaml"}


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda path: path.name)
def test_env_installs_this_package(path):
    packages, editables = _env_packages(path)
    assert "pip" in packages, f"{path.name}: lists pip packages without pip"
    assert editables, f"{path.name}: does not install brainldm (pip: -e ../), which its rules' scripts import"
    for editable in editables:
        root = (path.parent / editable.split("[")[0]).resolve()
        assert root == REPO, f"{path.name}: -e {editable} is {root}, not the repository"


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda path: path.name)
def test_env_specs_equal_pyproject(path):
    packages, _ = _env_packages(path)
    pyproject = _pyproject()
    extra = sorted(set(packages) - set(pyproject) - {"python", "pip"})
    assert not extra, f"{path.name} lists packages that pyproject.toml does not depend on: {extra}"
    differ = {
        name: (str(spec) or "any", str(pyproject[name]) or "any")
        for name, spec in packages.items()
        if name in pyproject and spec != pyproject[name]
    }
    assert not differ, f"{path.name}: specs that differ from pyproject.toml (env, pyproject): {differ}"


def test_every_pyproject_dependency_is_in_an_env():
    listed = set()
    for path in ENV_FILES:
        listed |= set(_env_packages(path)[0])
    missing = sorted(set(_pyproject()) - WORKFLOW_TOOLS - listed)
    assert not missing, f"pyproject.toml dependencies that no envs/*.yaml lists: {missing}"


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda path: path.name)
def test_env_python_within_requires_python(path):
    packages, _ = _env_packages(path)
    assert "python" in packages, f"{path.name}: no python version"
    requires = SpecifierSet(PYPROJECT["requires-python"])
    candidates = [f"3.{minor}" for minor in range(6, 20)]
    allowed = [version for version in candidates if version in packages["python"]]
    assert allowed, f"{path.name}: python{packages['python']} admits no Python 3 version"
    outside = [version for version in allowed if version not in requires]
    assert not outside, f"{path.name}: python{packages['python']} admits {outside}, outside requires-python {requires}"


def test_cpu_env_has_no_gpu_packages_and_gpu_env_installs_the_extra():
    """The point of two envs: the CPU rules' env carries no torch or diffusers."""
    gpu_only = set(_pyproject(("gpu",)))
    cpu_packages, cpu_editables = _env_packages(REPO / "envs" / "cpu.yaml")
    assert not gpu_only & set(cpu_packages), sorted(gpu_only & set(cpu_packages))
    assert all("[" not in e for e in cpu_editables), cpu_editables  # -e ../ without the gpu extra
    _, gpu_editables = _env_packages(REPO / "envs" / "gpu.yaml")
    assert any(e.endswith("[gpu]") for e in gpu_editables), gpu_editables


BLOCK_GPU_PACKAGES = """
import importlib.abc, sys
class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {names!r}:
            raise ImportError(f"{{name}} is not in the CPU environment")
sys.meta_path.insert(0, _Blocked())
"""


def test_cpu_rules_run_without_the_gpu_packages():
    """Every rule on envs/cpu.yaml imports its library code with the gpu extra's packages absent."""
    import subprocess
    import sys

    envs = _rule_envs()
    cpu_rules = sorted(rule for rule, env in envs.items() if env == "cpu.yaml")
    assert {"extract_roi_betas", "encode_feature", "evaluate_pooled", "draw_map_flatmaps"} <= set(cpu_rules)
    blocked = sorted(set(_pyproject(("gpu",))) | {"torch", "torchvision"})
    imports = []
    for rule in cpu_rules:
        script = (REPO / "workflow_scripts" / f"{rule}.py").read_text()
        imports += [line for line in script.splitlines() if line.startswith(("from brainldm", "import brainldm"))]
    # himalaya's numpy backend and the backend choice must not need torch either
    code = BLOCK_GPU_PACKAGES.format(names=blocked) + "\n".join(dict.fromkeys(imports)) + """
from himalaya.backend import set_backend
from brainldm.device import himalaya_backend
set_backend(himalaya_backend("auto"))
print(himalaya_backend("auto"))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "numpy"
