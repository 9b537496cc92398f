"""The import rules of ARCHITECTURE.md ("Layers"), checked for every module under src/feitian:

* (a) no upward imports: a module imports only from its own layer or the layers below it;
* (b) one component imports another only through the other's package root (``from feitian.coord import X``),
  never a module inside it (``from feitian.coord.server.service import X``);
* (c) inside a component with role sub-packages (Pangu, Nuwa), the sides do not import each other and the shared
  level imports no side.

The cores' purity (no I/O, clocks or randomness) is checked by test_purity.py. Imports inside functions and under
``TYPE_CHECKING`` count like any other: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "feitian"

# Components, bottom layer first (ARCHITECTURE.md, "Layers"). A module belongs to the component with the longest
# matching path prefix; a component is a package (or a top-level module) whose root is its public face.
LAYERS: list[tuple[str, ...]] = [
    ("__init__", "errors", "base"),  # the version, the one error tree, clocks/randomness/units/topology
    # pure
    ("rpc/core", "consensus", "security/core", "coord/core", "dfs/core", "replica/core", "sched/core", "job/core"),
    ("runtime",),  # the only OS-touching layer
    ("rpc", "rpc/gateway", "security"),  # Kuafu and Zhongkui's identities, capabilities and TLS
    (
        "replica",
        "security/authority",
        "coord",
        "dfs",
        "sched",
        "job",
        "job/streamline",
        "examples",
    ),  # services, on the replicated-service kit
    ("deploy",),  # node processes, roles, the local cluster
    ("testing",),  # test helpers that start real clusters
    ("bench",),  # benchmark programs
    ("cli", "__main__"),  # the `feitian` command
]

# Components whose every module is public: libraries of independent tools, each module documented by its own
# path (``feitian.base.clock``, ``feitian.runtime.periodic``, ``python -m feitian.bench.rpc``), not services with
# a private inside. Importing one of their modules directly is fine.
TOOLBOXES = {
    "base": "clocks, randomness, units and topology: each module is a small public tool",
    "runtime": "files, WAL, periodic tasks, event loop, processes: each module is a public tool of its own",
    "bench": "each module is a benchmark program (`python -m feitian.bench.X`) the CLI runs",
    "testing": "each module is a helper set for one component's tests (`feitian.testing.dfs`, ...)",
}

# (importing module, imported module) -> why it may break rule (a) or (b). Keep this short; prefer a root export.
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("__main__.py", "feitian.cli.main"): (
        "`python -m feitian` runs the entry point the `feitian` script names (pyproject); the CLI root cannot export "
        "a `main` function, its module `main` would shadow it"
    ),
    ("bench/security.py", "feitian.security.bench"): (
        "`feitian bench security` runs Zhongkui's micro-benchmark program (`python -m feitian.security.bench`): "
        "a program of its own, not an API"
    ),
    # The simulator's deliberately broken variants patch one inner function of a core, to show that the
    # simulator's invariant checks catch the bug; reaching inside is their point.
    ("testing/sim/mutants.py", "feitian.consensus.raft"): "a broken variant of the Raft core",
    ("testing/sim/service_mutants.py", "feitian.coord.core.tree"): "a broken variant of Nuwa's tree",
    ("testing/sim/service_mutants.py", "feitian.dfs.core.namespace"): "a broken variant of Pangu's namespace",
    ("dfs/__init__.py", "feitian.deploy.dfs_local"): (
        "feitian.dfs has always exported connect_local, a client of a local cluster, which reads the cluster "
        "directory that the deploy layer owns; the root looks it up only when asked (never on import), and no "
        "module below the root imports deploy"
    ),
}

# Components split into role sub-packages: side -> the sides it must not import. The shared level (messages,
# options, core) may import no side at all; the role glue (roles.py / role.py) and the root sit above the sides.
SIDES: dict[str, dict[str, tuple[str, ...]]] = {
    "dfs": {
        "master": ("chunkserver", "client"),
        "chunkserver": ("master", "client"),
        "client": ("master", "chunkserver"),
        "messages": ("master", "chunkserver", "client"),
        "options.py": ("master", "chunkserver", "client"),
        "presenter.py": ("master", "chunkserver", "client"),
    },
    "coord": {
        "server": ("client",),
        "client": ("server",),
        "messages.py": ("server", "client"),
        "ops_json.py": ("server", "client"),
    },
}

COMPONENTS = {name: layer for layer, names in enumerate(LAYERS) for name in names}


def component_of(rel: str) -> str:
    """The component a file (path relative to src/feitian, '/'-separated) or a module path belongs to."""
    parts = rel.removesuffix(".py").split("/")
    for n in range(len(parts), 0, -1):
        key = "/".join(parts[:n])
        if key in COMPONENTS:
            return key
    raise AssertionError(f"{rel}: not in any layer of tests/contract/test_imports.py (add it to LAYERS)")


def module_rel(module: str) -> str:
    """``feitian.coord.server.service`` -> ``coord/server/service``."""
    return module.removeprefix("feitian").lstrip(".").replace(".", "/") or "__init__"


def feitian_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import of a feitian module, including ``from feitian.x import y`` where y is
    a sub-module (then the sub-module is what is imported)."""
    tree = ast.parse(path.read_text(), str(path))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "feitian")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "feitian":
                continue
            base = SRC.joinpath(*module_rel(node.module).split("/"))
            for alias in node.names:
                sub = base / alias.name
                if sub.is_dir() or sub.with_suffix(".py").is_file():
                    out.append((node.lineno, f"{node.module}.{alias.name}"))
                else:
                    out.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import (the tree uses absolute imports only)")
    return out


def all_files() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def rel_of(path: Path) -> str:
    return path.relative_to(SRC).as_posix()


def problems_of(rel: str, module: str) -> list[str]:
    """What is wrong with the file ``rel`` importing ``module`` (nothing: an empty list)."""
    if (rel, module) in EXCEPTIONS:
        return []
    own = component_of(rel)
    target_rel = module_rel(module)
    target = component_of(target_rel)
    problems = []
    if COMPONENTS[target] > COMPONENTS[own]:
        problems.append(f"upward: {own} (layer {COMPONENTS[own]}) imports {target} (layer {COMPONENTS[target]})")
    package = target.split("/")[0]
    if package != own.split("/")[0] and target_rel != target and package not in TOOLBOXES:
        problems.append(f"not through the root of {target}: import it from feitian.{target.replace('/', '.')}")
    return problems


def violations() -> dict[str, list[str]]:
    """Rule (a) and (b) violations by file, exceptions left out."""
    found: dict[str, list[str]] = {}
    for path in all_files():
        rel = rel_of(path)
        for line, module in sorted(set(feitian_imports(path))):
            for problem in problems_of(rel, module):
                found.setdefault(rel, []).append(f"{line}: {module} — {problem}")
    return found


def test_every_module_is_in_a_layer() -> None:
    for path in all_files():
        component_of(rel_of(path))


def test_no_upward_imports_and_cross_component_imports_through_a_root() -> None:
    bad = violations()
    assert not bad, "import rules (ARCHITECTURE.md, Layers) broken:\n" + "\n".join(
        f"  {rel}:{line}" for rel, lines in bad.items() for line in lines
    )


def test_every_exception_is_still_needed() -> None:
    used = {(rel_of(p), module) for p in all_files() for _, module in feitian_imports(p)}
    stale = sorted(set(EXCEPTIONS) - used)
    assert not stale, f"no longer imported, drop them from EXCEPTIONS: {stale}"


def side_problem(package: str, inside: str, module: str) -> str | None:
    """Whether the file ``inside`` (relative to ``package``) importing ``module`` crosses from one side to another."""
    side = inside.split("/")[0]
    parts = module_rel(module).split("/")
    if parts[0] == package and len(parts) > 1 and parts[1] in SIDES[package].get(side, ()):
        return f"{package}/{inside} imports {module} (the {side} side must not import it)"
    return None


@pytest.mark.parametrize("package", sorted(SIDES))
def test_role_sides_do_not_import_each_other(package: str) -> None:
    bad = []
    for path in sorted((SRC / package).rglob("*.py")):
        inside = path.relative_to(SRC / package).as_posix()
        for line, module in feitian_imports(path):
            problem = side_problem(package, inside, module)
            if problem is not None:
                bad.append(f"{line}: {problem}")
    assert not bad, "\n".join(bad)


def test_the_rules_catch_what_they_should() -> None:
    """The checker itself, on imports the tree must never contain."""
    assert problems_of("cli/dfs.py", "feitian.dfs") == []  # through the root
    assert problems_of("dfs/master/leader.py", "feitian.dfs.core.records") == []  # inside its own component
    assert problems_of("deploy/roles.py", "feitian.coord.server.service")[0].startswith("not through the root")
    assert problems_of("dfs/client/read.py", "feitian.deploy.cluster")[0].startswith("upward")
    assert problems_of("dfs/core/placement.py", "feitian.dfs.options")[0].startswith("upward")  # a core reaching up
    assert problems_of("security/guard.py", "feitian.security.authority")[0].startswith("upward")
    assert problems_of("sched/core/allocator.py", "feitian.base.topology") == []  # a toolbox's module
    assert problems_of("dfs/__init__.py", "feitian.deploy.dfs_local") == []  # the listed exception
    assert side_problem("dfs", "client/read.py", "feitian.dfs.master.leader") is not None
    assert side_problem("dfs", "messages/chunk.py", "feitian.dfs.chunkserver.chunk_file") is not None
    assert side_problem("coord", "server/rest.py", "feitian.coord.client.client") is not None
    assert side_problem("dfs", "roles.py", "feitian.dfs.master.master") is None  # the role glue sits above
    assert component_of("sched/master/service.py") == "sched"  # new sched modules are covered without a change
