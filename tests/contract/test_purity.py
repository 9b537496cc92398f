"""Pure cores import no I/O, clocks or randomness; layers point downward (ARCHITECTURE.md, Layers)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "feitian"
FORBIDDEN = {
    "asyncio",
    "socket",
    "time",
    "random",
    "os",
    "io",
    "threading",
    "subprocess",
    "selectors",
    "signal",
    "uvloop",
    "shutil",
    "tempfile",
    "pathlib",
}
PURE_PACKAGES = ["rpc/core", "consensus", "security/core", "dfs/core", "coord/core", "replica/core", "sched/core"]


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def pure_modules() -> list[Path]:
    out = []
    for pkg in PURE_PACKAGES:
        out.extend(sorted((SRC / pkg).glob("*.py")))
    return out


@pytest.mark.parametrize("path", pure_modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_pure_modules_import_no_io(path: Path) -> None:
    bad = imports_of(path) & FORBIDDEN
    assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"


def feitian_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("feitian."):
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("feitian."))
    return out


# Lower layers must not import higher ones (ARCHITECTURE.md, "Layers").
LAYER_RULES = {
    "base": {"feitian.rpc", "feitian.deploy", "feitian.cli", "feitian.coord", "feitian.dfs", "feitian.sched"},
    "consensus": {"feitian.rpc", "feitian.deploy", "feitian.cli", "feitian.coord", "feitian.dfs"},
    "rpc": {"feitian.deploy", "feitian.cli", "feitian.coord", "feitian.dfs", "feitian.sched"},
    "runtime": {"feitian.rpc", "feitian.deploy", "feitian.cli", "feitian.coord", "feitian.dfs", "feitian.sched"},
    "deploy": {"feitian.cli"},
}


@pytest.mark.parametrize("layer", sorted(LAYER_RULES))
def test_layers_point_downward(layer: str) -> None:
    for path in sorted((SRC / layer).rglob("*.py")):
        for module in feitian_imports(path):
            assert not any(module == f or module.startswith(f + ".") for f in LAYER_RULES[layer]), (
                f"{path.relative_to(SRC)} (layer {layer}) imports {module}"
            )
