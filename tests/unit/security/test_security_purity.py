"""feitian.security.core is pure: it imports no asyncio, socket, time, random, or file/OS I/O modules."""

from __future__ import annotations

import ast
from pathlib import Path

import feitian.security.core as core

FORBIDDEN = {"asyncio", "socket", "time", "random", "os", "io", "pathlib", "shutil", "tempfile", "ssl", "logging"}
FORBIDDEN_CALLS = {"open", "print", "input"}


def test_core_imports_nothing_impure() -> None:
    folder = Path(core.__file__).parent
    files = sorted(folder.glob("*.py"))
    assert len(files) >= 8
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in FORBIDDEN_CALLS, f"{path.name} calls {node.func.id}()"
