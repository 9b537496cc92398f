"""Property tests of the namespace: it agrees with a simple model under random mkdir/create/rename/delete,
renames are atomic, refused commands change nothing, and snapshots round-trip exactly — also mid-history, after
which the original and the restored state machine keep agreeing command for command (as replicas must)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dfs_fixtures import SMALL, T0
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feitian.dfs.core import (
    AcquireLease,
    AddChunk,
    AddReplica,
    BumpChunkVersion,
    CloseFile,
    Command,
    CommitChunk,
    Create,
    Delete,
    DfsStateMachine,
    LeaseMode,
    Mkdir,
    RegisterServer,
    RemovalReason,
    RemoveReplica,
    Rename,
    encode_command,
)
from feitian.dfs.core.records import DirNode
from feitian.errors import (
    AlreadyExistsError,
    ConflictError,
    FeitianError,
    InvalidArgumentError,
    NotFoundError,
)

PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

names = st.sampled_from(["a", "b", "c"])
paths = st.lists(names, min_size=0, max_size=3).map(lambda segs: "/" + "/".join(segs))
ops = st.one_of(
    st.tuples(st.just("mkdir"), paths, st.booleans()),
    st.tuples(st.just("create"), paths, st.booleans(), st.booleans()),
    st.tuples(st.just("rename"), paths, paths, st.booleans()),
    st.tuples(st.just("delete"), paths, st.booleans()),
)


def segs(path: str) -> tuple[str, ...]:
    return tuple(s for s in path.split("/") if s)


class Model:
    """The namespace as a dict from segments to (kind, label); the label follows a node through renames."""

    def __init__(self) -> None:
        self.nodes: dict[tuple[str, ...], tuple[str, int]] = {(): ("d", 0)}
        self.labels = 0

    def _label(self) -> int:
        self.labels += 1
        return self.labels

    def _walk_parents(self, s: tuple[str, ...], parents: bool) -> tuple[str, ...] | type[FeitianError]:
        """Missing ancestors to create, or the error class."""
        missing: list[str] = []
        for depth in range(len(s) - 1):
            node = self.nodes.get(s[: depth + 1])
            if node is None:
                if not parents:
                    return NotFoundError
                missing = list(s[depth:-1])
                break
            if node[0] == "f":
                return ConflictError
        return tuple(missing)

    def _lookup(self, s: tuple[str, ...]) -> tuple[str, int] | type[FeitianError] | None:
        for depth in range(len(s) - 1):
            node = self.nodes.get(s[: depth + 1])
            if node is None:
                return NotFoundError
            if node[0] == "f":
                return ConflictError
        return self.nodes.get(s)

    def _add_dirs(self, s: tuple[str, ...], missing: tuple[str, ...]) -> None:
        base = s[: len(s) - 1 - len(missing)]
        for name in missing:
            base = (*base, name)
            self.nodes[base] = ("d", self._label())

    def mkdir(self, path: str, parents: bool) -> type[FeitianError] | int:
        s = segs(path)
        if not s:
            return 0 if parents else AlreadyExistsError
        missing = self._walk_parents(s, parents)
        if isinstance(missing, type):
            return missing
        existing = self.nodes.get(s)
        if existing is not None:
            return existing[1] if parents and existing[0] == "d" else AlreadyExistsError
        self._add_dirs(s, missing)
        label = self._label()
        self.nodes[s] = ("d", label)
        return label

    def create(self, path: str, overwrite: bool, parents: bool) -> type[FeitianError] | int:
        s = segs(path)
        if not s:
            return ConflictError
        missing = self._walk_parents(s, parents)
        if isinstance(missing, type):
            return missing
        existing = self.nodes.get(s)
        if existing is not None and (existing[0] == "d" or not overwrite):
            return ConflictError if existing[0] == "d" else AlreadyExistsError
        self._add_dirs(s, missing)
        label = self._label()
        self.nodes[s] = ("f", label)
        return label

    def rename(self, src: str, dst: str, overwrite: bool) -> type[FeitianError] | None:
        s, d = segs(src), segs(dst)
        node = self._lookup(s)
        if isinstance(node, type):
            return node
        if node is None:
            return NotFoundError
        if not s:
            return InvalidArgumentError
        if not d:
            return AlreadyExistsError
        if node[0] == "d" and d[: len(s)] == s and d != s:
            return InvalidArgumentError
        parent = self._lookup(d[:-1])
        if isinstance(parent, type):
            return parent
        if parent is None:
            return NotFoundError
        if parent[0] == "f":
            return ConflictError
        existing = self.nodes.get(d)
        if existing is not None and d != s:
            if existing[0] == "d":
                return AlreadyExistsError
            if node[0] == "d":
                return ConflictError
            if not overwrite:
                return AlreadyExistsError
        if d == s:
            return None
        moved = {k: v for k, v in self.nodes.items() if k[: len(s)] == s}
        for k in moved:
            del self.nodes[k]
        self.nodes.pop(d, None)
        for k, v in moved.items():
            self.nodes[d + k[len(s) :]] = v
        return None

    def delete(self, path: str, recursive: bool) -> type[FeitianError] | None:
        s = segs(path)
        node = self._lookup(s)
        if isinstance(node, type):
            return node
        if node is None:
            return NotFoundError
        if not s:
            return InvalidArgumentError
        below = [k for k in self.nodes if k[: len(s)] == s and k != s]
        if below and not recursive:
            return ConflictError
        for k in [s, *below]:
            del self.nodes[k]
        return None


def tree_of(sm: DfsStateMachine) -> dict[tuple[str, ...], tuple[str, int]]:
    out: dict[tuple[str, ...], tuple[str, int]] = {}

    def visit(inode: int, prefix: tuple[str, ...]) -> None:
        node = sm.tree.nodes[inode]
        out[prefix] = ("d" if isinstance(node, DirNode) else "f", inode)
        if isinstance(node, DirNode):
            for name, child in node.children.items():
                visit(child, (*prefix, name))

    visit(1, ())
    return out


def run(sm: DfsStateMachine, index: int, command: Command) -> Any:
    return sm.apply(index, encode_command(command))


@PROPS
@given(st.lists(ops, min_size=5, max_size=40))
def test_namespace_matches_the_model(steps: list[tuple[Any, ...]]) -> None:
    sm, model = DfsStateMachine(SMALL), Model()
    inode_label: dict[int, int] = {1: 0}
    now = T0
    for index, step in enumerate(steps, start=1):
        now += 1
        before = sm.snapshot()
        kind = step[0]
        expected: type[FeitianError] | int | None
        if kind == "mkdir":
            expected = model.mkdir(step[1], step[2])
            result = run(sm, index, Mkdir(step[1], now, parents=step[2]))
        elif kind == "create":
            expected = model.create(step[1], step[2], step[3])
            result = run(sm, index, Create(step[1], now, overwrite=step[2], parents=step[3]))
        elif kind == "rename":
            expected = model.rename(step[1], step[2], step[3])
            result = run(sm, index, Rename(step[1], step[2], now, overwrite=step[3]))
        else:
            expected = model.delete(step[1], step[2])
            result = run(sm, index, Delete(step[1], now, recursive=step[2]))
        if isinstance(expected, type):
            assert type(result) is expected, f"step {step}: expected {expected.__name__}, got {result!r}"
            probe = DfsStateMachine(SMALL)
            probe.restore(before)
            probe.applied_index, probe.clock_ns = sm.applied_index, sm.clock_ns
            assert probe.snapshot() == sm.snapshot(), f"refused {step} changed the state"
        else:
            assert not isinstance(result, FeitianError), f"step {step}: {result!r}"
        sm.validate()
        tree = tree_of(sm)
        for path, (_, inode) in tree.items():  # nodes created by this step take the model's labels
            if inode not in inode_label and path in model.nodes:
                inode_label[inode] = model.nodes[path][1]
        actual = {path: (k, inode_label.get(inode, -1)) for path, (k, inode) in tree.items()}
        assert actual == model.nodes, f"after {step}"


@PROPS
@given(st.lists(ops, max_size=30), paths, paths)
def test_rename_moves_a_whole_subtree_or_nothing(steps: list[tuple[Any, ...]], src: str, dst: str) -> None:
    sm = DfsStateMachine(SMALL)
    for index, step in enumerate(steps, start=1):
        if step[0] == "mkdir":
            run(sm, index, Mkdir(step[1], T0, parents=True))
        elif step[0] == "create":
            run(sm, index, Create(step[1], T0, parents=True))
    before = tree_of(sm)
    result = run(sm, len(steps) + 1, Rename(src, dst, T0, overwrite=True))
    after = tree_of(sm)
    if isinstance(result, FeitianError):
        assert after == before
        return
    s, d = segs(src), segs(dst)
    moved = {k[len(s) :]: v for k, v in before.items() if k[: len(s)] == s}
    assert {k[len(d) :]: v for k, v in after.items() if k[: len(d)] == d} == moved
    assert not any(k[: len(s)] == s for k in after) or s == d or d[: len(s)] == s


# -- every command, snapshots and determinism ---------------------------------------------------------------------

SERVERS = ("s0", "s1", "s2", "s3")
server_sets = st.lists(st.sampled_from(SERVERS), min_size=1, max_size=2, unique=True).map(tuple)
steps_dt = st.sampled_from([0] * 12 + [1, 50, 2 * 10**9, 7 * 10**9])
slot = st.integers(min_value=0, max_value=7)
short_paths = st.sampled_from(["/a", "/b", "/a/b", "/f0", "/f1", "/f2", "/a/f0", "/a/b/f1"])
file_paths = st.sampled_from(["/f0", "/f1", "/f2", "/a/f0", "/a/b/f1"])
grow = st.integers(min_value=-2, max_value=3 * SMALL.block_size_bytes)
_kinds: dict[str, Callable[[], st.SearchStrategy[tuple[Any, ...]]]] = {
    "mkdir": lambda: st.tuples(st.just("mkdir"), short_paths, st.booleans()),
    "create": lambda: st.tuples(st.just("create"), file_paths, st.booleans(), st.sampled_from(["w1", "w2", ""])),
    "rename": lambda: st.tuples(st.just("rename"), short_paths, short_paths, st.booleans()),
    "delete": lambda: st.tuples(st.just("delete"), short_paths, st.booleans(), st.booleans()),
    "acquire": lambda: st.tuples(
        st.just("acquire"), file_paths, st.sampled_from(["w1", "w2"]), st.sampled_from(LeaseMode)
    ),
    "add_chunk": lambda: st.tuples(
        st.just("add_chunk"), slot, st.integers(0, 5).map(lambda n: int(n == 0)), server_sets, grow
    ),
    "commit": lambda: st.tuples(st.just("commit"), slot, slot, grow, st.booleans()),
    "bump": lambda: st.tuples(
        st.just("bump"), slot, slot, st.integers(0, 3).map(lambda n: 1 if n else 2), server_sets, grow, st.booleans()
    ),
    "close": lambda: st.tuples(st.just("close"), slot, grow, st.booleans()),
    "add_replica": lambda: st.tuples(
        st.just("add_replica"), slot, slot, st.sampled_from(SERVERS), st.integers(0, 3).map(bool)
    ),
    "remove_replica": lambda: st.tuples(
        st.just("remove_replica"), slot, slot, st.sampled_from(SERVERS), st.sampled_from(RemovalReason)
    ),
}
_weights = {"acquire": 2, "create": 3, "add_chunk": 4, "commit": 4, "bump": 3, "add_replica": 3, "remove_replica": 2}
abstract = st.one_of(*[make() for kind, make in _kinds.items() for _ in range(_weights.get(kind, 1))])


def resolve(sm: DfsStateMachine, op: tuple[Any, ...], now: int) -> Command:
    """Turn an abstract step into a command against the current state, as a leader (or a confused client) would."""
    from feitian.dfs.core.records import FileNode

    kind = op[0]
    if kind == "mkdir":
        return Mkdir(op[1], now, parents=op[2])
    if kind == "create":
        return Create(
            op[1], now, replication=2, overwrite=op[2], parents=True, holder=op[3], lease_expires_ns=now + 3 * 10**9
        )
    if kind == "rename":
        return Rename(op[1], op[2], now, overwrite=op[3])
    if kind == "delete":
        return Delete(op[1], now, recursive=op[2], force=op[3])
    if kind == "acquire":
        return AcquireLease(op[1], op[2], op[3], now, now + 3 * 10**9)
    live = [f for f in sorted(sm.leased_files()) if sm.tree.nodes[f].lease.expires_ns > now]  # type: ignore[union-attr]
    files = live or sorted(n.inode for n in sm.tree.nodes.values() if isinstance(n, FileNode))
    if kind in ("add_replica", "remove_replica"):  # any chunk, leased file or not
        files = sorted(n.inode for n in sm.tree.nodes.values() if isinstance(n, FileNode) and n.chunks)
    file = sm.tree.nodes[files[op[1] % len(files)]] if files else None
    if not isinstance(file, FileNode):
        return Mkdir("/", now, parents=True)
    lease = file.lease.lease_id if file.lease else 1
    chunk = sm.table.chunks[file.chunks[op[2] % len(file.chunks)]] if file.chunks and kind != "add_chunk" else None
    if kind == "add_chunk":
        last = sm.table.chunks[file.chunks[-1]].length if file.chunks else 0
        return AddChunk(file.inode, lease - op[2], sm.next_chunk_id, op[3], now, max(-1, last + op[4]))
    if kind == "close":
        last = sm.table.chunks[file.chunks[-1]].length if file.chunks else 0
        return CloseFile(
            file.inode, lease, now, max(-1, last + op[2]) if file.chunks else -1, op[3] and bool(file.chunks)
        )
    if chunk is None:
        return Mkdir("/", now, parents=True)
    if kind == "commit":
        return CommitChunk(file.inode, lease, chunk.chunk_id, chunk.length + op[3], op[4], now)
    if kind == "bump":
        return BumpChunkVersion(
            file.inode, lease, chunk.chunk_id, chunk.version + op[3], op[4], now, max(-1, chunk.length + op[5]), op[6]
        )
    if kind == "add_replica":
        return AddReplica(chunk.chunk_id, op[3], chunk.version, chunk.length + (0 if op[4] else 1), now)
    return RemoveReplica(chunk.chunk_id, op[3], op[4])


@PROPS
@given(st.lists(st.tuples(abstract, steps_dt), min_size=10, max_size=80), st.integers(0, 80))
def test_snapshot_round_trip_and_replicas_agree(steps: list[tuple[tuple[Any, ...], int]], cut: int) -> None:
    sm = DfsStateMachine(SMALL)
    for i, server in enumerate(SERVERS):
        run(sm, i + 1, RegisterServer(server, f"tcp://{server}:1", f"rack{i % 2}", 1 << 30, 0))
    index, now = len(SERVERS), T0
    follower: DfsStateMachine | None = None
    for position, (op, dt) in enumerate(steps):
        if position == cut:
            follower = DfsStateMachine(SMALL)
            follower.restore(sm.snapshot())
            assert follower.snapshot() == sm.snapshot()
        index, now = index + 1, now + dt
        data = encode_command(resolve(sm, op, now))
        result = sm.apply(index, data)
        if follower is not None:
            assert repr(follower.apply(index, data)) == repr(result)
        sm.validate()
    restored = DfsStateMachine(SMALL)
    restored.restore(sm.snapshot())
    restored.validate()
    assert restored.snapshot() == sm.snapshot()
    if follower is not None:
        assert follower.snapshot() == sm.snapshot()
    for path in ("/", "/a", "/a/b", "/b/c"):
        if sm.exists(path):
            assert restored.stat(path) == sm.stat(path)
            if restored.stat(path).kind == "file" and sm.stat(path).length:
                assert restored.locate(path, 0, 1) == sm.locate(path, 0, 1)
