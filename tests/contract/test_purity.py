"""Pure cores import no I/O, clocks or randomness (ARCHITECTURE.md, Layers). The layer order and the other import
rules are checked by test_imports.py."""

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
PURE_PACKAGES = [
    "rpc/core",
    "consensus",
    "security/core",
    "dfs/core",
    "coord/core",
    "replica/core",
    "sched/core",
    "job/core",
]


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
