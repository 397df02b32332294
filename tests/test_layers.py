"""Imports point down: core <- nsd, ldm <- stages <- synthetic; the configuration depends on no other layer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "brainldm"

#: Layer of each top-level module or subpackage; a module may import its own layer and those below.
LAYERS = {
    "config": 0, "errors": 0, "device": 0, "seeds": 0, "logs": 0, "lazy": 0,
    "files": 1, "stats": 1, "volume": 1, "manifest": 1, "jobstats": 1, "shards": 1, "decoded": 1, "reduced": 1, "feature_file": 1, "ridge": 2,
    "nsd": 3, "ldm": 3,
    "pca": 4, "decoding": 4, "encoding": 4, "flatmaps": 4, "evaluation": 4, "costs": 4,
    "price": 5,
    "synthetic": 5,
}
#: Same-layer packages that must not import each other.
APART = {frozenset({"nsd", "ldm"})}


def _part(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "__init__"  # "brainldm" itself: its __init__


def _is_module(name: str) -> bool:
    path = SRC.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(path: Path) -> set[str]:
    """brainldm modules imported by ``path`` (absolute and relative imports)."""
    package = ".".join(path.relative_to(SRC.parent).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
                if node.module:
                    found.add(name)
                else:  # "from .. import x": a submodule, or a name of the package itself
                    found.update(f"{name}.{alias.name}" if _is_module(f"{name}.{alias.name}") else name
                                 for alias in node.names)
            elif node.module and node.module.startswith("brainldm"):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("brainldm"))
    return {name for name in found if name.startswith("brainldm.") or name == "brainldm"}


MODULES = sorted(p for p in SRC.rglob("*.py") if p.relative_to(SRC).parts[0] != "__init__.py")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_down(path):
    own = path.relative_to(SRC).parts[0].removesuffix(".py")
    assert own in LAYERS, f"{own}: add it to LAYERS"
    for name in _imports(path):
        other = _part(name)
        if other in ("__init__", own):
            continue
        assert other in LAYERS, f"{path.name} imports unknown {name}"
        assert LAYERS[other] <= LAYERS[own], f"{path.relative_to(SRC)} (layer {own}) imports {name} from above"
        assert frozenset({own, other}) not in APART, f"{path.relative_to(SRC)} imports {name}"


def test_configuration_imports_no_other_module():
    assert _imports(SRC / "config.py") == set()


def test_every_rule_has_a_library_function_of_its_name():
    """`grep "def <rule>"` lands on the code a rule runs: its script calls the function of the rule's name."""
    import re

    rules_dir = SRC.parents[1] / "rules"
    scripts = dict(re.findall(r"^rule (\w+):.*?script:\s*\"\.\./workflow_scripts/(\w+)\.py\"",
                              "\n".join(p.read_text() for p in sorted(rules_dir.glob("*.smk"))), re.S | re.M))
    assert len(scripts) > 15
    defined = {m for path in SRC.rglob("*.py") for m in re.findall(r"^def (\w+)\(", path.read_text(), re.M)}
    for rule, script in scripts.items():
        assert script == rule, f"rule {rule} runs workflow_scripts/{script}.py"
        text = (SRC.parents[1] / "workflow_scripts" / f"{script}.py").read_text()
        assert rule in defined, f"no def {rule}( in src/brainldm"
        assert re.search(rf"^{rule}\(", text, re.M), f"workflow_scripts/{script}.py does not call {rule}()"
