"""The namespace: paths, mkdir, create, rename, delete, list, stat, exists — every operation and its errors."""

from __future__ import annotations

import pytest
from dfs_fixtures import SMALL, Master

from feitian.dfs.core import (
    CloseFile,
    Create,
    Delete,
    DfsStateMachine,
    FileType,
    Mkdir,
    NamespaceConfig,
    NodeKind,
    Rename,
    SetReplication,
    decode_command,
    encode_command,
)
from feitian.errors import (
    AlreadyExistsError,
    ConfigError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
)


@pytest.fixture
def m() -> Master:
    return Master()


# -- paths and bounds ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("a/b", "not absolute"),
        ("", "not absolute"),
        ("/a//b", "empty path segment"),
        ("/a/./b", "'.' and '..'"),
        ("/a/../b", "'.' and '..'"),
        ("/a/\x00", "control character"),
        ("/a/*", "control character or '*'"),
    ],
)
def test_malformed_paths_are_refused_with_the_reason(m: Master, path: str, words: str) -> None:
    error = m.refused(Mkdir(path, m.now), InvalidArgumentError, "mkdir", words)
    assert error.fields.get("path", path) == path


def test_path_bounds_name_length_and_depth() -> None:
    m = Master(NamespaceConfig(max_name_bytes=8, max_path_bytes=32, max_depth=3))
    m.refused(Mkdir("/" + "x" * 9, m.now), InvalidArgumentError, "max_name_bytes 8")
    m.refused(Mkdir("/abcdefgh/abcdefgh/abcdefgh/abcdefgh", m.now), InvalidArgumentError, "max_path_bytes 32")
    m.refused(Mkdir("/a/b/c/d", m.now, parents=True), InvalidArgumentError, "max_depth 3")
    m.ok(Mkdir("/a/b/c", m.now, parents=True))
    assert m.sm.exists("/a/b/c/")  # one trailing slash is accepted


def test_entries_per_dir_and_max_files_bounds() -> None:
    m = Master(NamespaceConfig(max_entries_per_dir=2, max_files=5))
    m.ok(Mkdir("/a", m.now))
    m.ok(Mkdir("/b", m.now))
    m.refused(Mkdir("/c", m.now), InvalidArgumentError, "max_entries_per_dir 2")
    m.ok(Mkdir("/a/x", m.now))
    m.ok(Mkdir("/a/y", m.now))  # root + a, b, x, y = 5 nodes
    m.refused(Mkdir("/b/z", m.now), InvalidArgumentError, "max_files 5")
    m.refused(Create("/b/f", m.now), InvalidArgumentError, "max_files 5")


def test_config_problems_are_listed_together() -> None:
    with pytest.raises(ConfigError) as info:
        NamespaceConfig(block_size_bytes=4096, default_chunk_size_bytes=5000, default_replication=0).validate()
    assert len(info.value.problems) >= 2
    with pytest.raises(ConfigError):
        DfsStateMachine(NamespaceConfig(max_depth=0))


def test_undecodable_command_is_an_error_value(m: Master) -> None:
    result = m.sm.apply(1, b"\x93garbage")
    assert isinstance(result, InvalidArgumentError) and "cannot decode" in result.message
    with pytest.raises(InvalidArgumentError):
        decode_command(b"\xc1")
    command = Mkdir("/x", 5, parents=True)
    assert decode_command(encode_command(command)) == command


# -- mkdir --------------------------------------------------------------------------------------------------------


def test_mkdir_and_parents(m: Master) -> None:
    first = m.ok(Mkdir("/a", m.now))
    assert first.created
    m.refused(Mkdir("/a", m.now), AlreadyExistsError, "mkdir /a", "already exists")
    assert m.ok(Mkdir("/a", m.now, parents=True)) == type(first)(first.inode, False)
    m.refused(Mkdir("/x/y", m.now), NotFoundError, "parent directory /x does not exist")
    created = m.ok(Mkdir("/x/y/z", m.now, parents=True))
    assert created.created and m.sm.stat("/x/y/z").kind is NodeKind.DIR
    m.refused(Mkdir("/", m.now), AlreadyExistsError, "root")
    assert not m.ok(Mkdir("/", m.now, parents=True)).created


def test_mkdir_below_a_file_is_refused(m: Master) -> None:
    m.ok(Create("/f", m.now))
    m.refused(Mkdir("/f/d", m.now), ConflictError, "/f is a file, not a directory")
    m.refused(Mkdir("/f/d/e", m.now, parents=True), ConflictError, "/f is a file")
    m.refused(Mkdir("/f", m.now, parents=True), AlreadyExistsError, "a file already exists")


def test_mkdir_parents_refused_midway_creates_nothing(m: Master) -> None:
    m.ok(Mkdir("/a", m.now))
    m.ok(Create("/a/f", m.now))
    m.refused(Mkdir("/a/f/b/c", m.now, parents=True), ConflictError, "/a/f is a file")
    assert [e.name for e in m.sm.list_dir("/a")] == ["f"]


# -- create -------------------------------------------------------------------------------------------------------


def test_create_defaults_and_settings(m: Master) -> None:
    m.ok(Create("/f", m.now))
    status = m.sm.stat("/f")
    assert status.kind is NodeKind.FILE and status.length == 0 and status.chunk_count == 0
    assert status.replication == SMALL.default_replication == status.min_write_replicas
    assert status.chunk_size_bytes == SMALL.default_chunk_size_bytes and status.file_type is FileType.NORMAL
    m.ok(Create("/log", m.now, file_type=FileType.LOG, replication=2, min_write_replicas=1, chunk_size_bytes=8192))
    log = m.sm.stat("/log")
    assert (log.file_type, log.replication, log.min_write_replicas, log.chunk_size_bytes) == (FileType.LOG, 2, 1, 8192)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"replication": 17}, "replication 17 outside 1..16"),
        ({"replication": 2, "min_write_replicas": 3}, "min_write_replicas 3 outside 1..replication"),
        ({"chunk_size_bytes": 5000}, "chunk size 5000 is not a multiple of the block size"),
        ({"chunk_size_bytes": 1 << 30}, "chunk size"),
        (
            {"holder": "c", "lease_expires_ns": 1},
            "lease expiry 1970-01-01 00:00:00 UTC (19676 days ago) is not in the future",
        ),
        ({"holder": "c", "lease_expires_ns": 1 << 62}, "max_lease_ttl_ns"),
        ({"holder": "x" * 300, "lease_expires_ns": 1 << 62}, "lease holder must be 1..256"),
    ],
)
def test_create_bad_settings(m: Master, kwargs: dict[str, object], words: str) -> None:
    m.refused(Create("/f", m.now, **kwargs), InvalidArgumentError, "create /f", words)  # type: ignore[arg-type]


def test_create_errors(m: Master) -> None:
    m.ok(Mkdir("/d", m.now))
    m.ok(Create("/d/f", m.now))
    m.refused(Create("/d/f", m.now), AlreadyExistsError, "create /d/f: file already exists")
    m.refused(Create("/d", m.now), ConflictError, "create /d: is a directory")
    m.refused(Create("/d", m.now, overwrite=True), ConflictError, "is a directory")
    m.refused(Create("/", m.now), ConflictError, "is a directory")
    m.refused(Create("/x/f", m.now), NotFoundError, "parent directory /x does not exist")
    m.refused(Create("/d/f/g", m.now), ConflictError, "/d/f is a file")
    m.ok(Create("/x/y/f", m.now, parents=True))
    assert m.sm.exists("/x/y/f")


def test_create_overwrite_replaces_the_file_and_frees_its_chunks(m: Master) -> None:
    servers = m.servers(3)
    file_id, lease = m.create("/f")
    m.add_chunk(file_id, lease, tuple(servers))
    result = m.ok(Create("/f", m.now, overwrite=True, holder="client-a", lease_expires_ns=m.now + 10**9))
    assert result.freed_chunks == 1 and result.file_id != file_id
    assert m.sm.stat("/f").chunk_count == 0 and not m.sm.chunks_on(servers[0])


def test_create_overwrite_refused_while_another_writer_holds_it(m: Master) -> None:
    m.create("/f", holder="alice")
    error = m.refused(Create("/f", m.now, overwrite=True), ConflictError, "open for writing by 'alice'")
    assert error.fields["reason"] == "open_for_writing"
    # times as people read them, never raw nanoseconds (issue 16): when the lease ends, when the file is free
    assert "expires at 2023-11-14 22:14:20 UTC (in 60 s)" in error.message
    assert error.hint is not None and "recovers the file at 2023-11-14 22:14:25 UTC (in 65 s)" in error.hint
    assert str(error.fields["expires_ns"]) not in error.message
    m.tick(61 + SMALL.takeover_grace_ns / 1e9)  # the lease expired and its grace passed
    m.ok(Create("/f", m.now, overwrite=True))


# -- stat, list, exists -------------------------------------------------------------------------------------------


def test_stat_list_exists(m: Master) -> None:
    m.ok(Mkdir("/d/e", m.now, parents=True))
    for name in ("c", "a", "b"):
        m.ok(Create(f"/d/{name}", m.now))
    assert [(e.name, e.kind) for e in m.sm.list_dir("/d")] == [
        ("a", NodeKind.FILE),
        ("b", NodeKind.FILE),
        ("c", NodeKind.FILE),
        ("e", NodeKind.DIR),
    ]
    assert [e.name for e in m.sm.list_dir("/d", start_after="a", limit=2)] == ["b", "c"]
    assert m.sm.stat("/d").entries == 4 and m.sm.stat("/").kind is NodeKind.DIR
    assert m.sm.exists("/d/a") and not m.sm.exists("/d/zz") and not m.sm.exists("/d/a/below-a-file")
    with pytest.raises(NotFoundError, match="stat /nope: no such file or directory"):
        m.sm.stat("/nope")
    with pytest.raises(ConflictError, match="list /d/a: not a directory"):
        m.sm.list_dir("/d/a")
    with pytest.raises(InvalidArgumentError, match="not absolute"):
        m.sm.exists("d")


def test_list_is_capped_by_max_list_entries() -> None:
    m = Master(NamespaceConfig(max_list_entries=3))
    for i in range(5):
        m.ok(Create(f"/f{i}", m.now))
    assert [e.name for e in m.sm.list_dir("/")] == ["f0", "f1", "f2"]
    assert [e.name for e in m.sm.list_dir("/", start_after="f2", limit=100)] == ["f3", "f4"]


# -- rename -------------------------------------------------------------------------------------------------------


def test_rename_file_and_directory_keep_inodes(m: Master) -> None:
    m.ok(Mkdir("/a/b", m.now, parents=True))
    file_id, _ = m.create("/a/b/f")
    m.ok(Rename("/a/b/f", "/a/g", m.now))
    assert m.sm.stat("/a/g").inode == file_id and not m.sm.exists("/a/b/f")
    m.ok(Rename("/a", "/z", m.now))
    assert m.sm.stat("/z/g").inode == file_id and m.sm.exists("/z/b") and not m.sm.exists("/a")
    assert m.sm.file_status(file_id).path == "/z/g"
    # the writer keeps its lease across the rename: leases follow the file, not the path
    assert m.sm.stat("/z/g").lease_holder == "client-a"
    m.ok(Rename("/z/g", "/z/g", m.now))  # onto itself: nothing happens
    assert m.sm.stat("/z/g").inode == file_id


def test_rename_errors(m: Master) -> None:
    m.ok(Mkdir("/a/b", m.now, parents=True))
    m.ok(Mkdir("/c", m.now))
    m.ok(Create("/f", m.now))
    m.ok(Create("/g", m.now))
    m.refused(Rename("/nope", "/x", m.now), NotFoundError, "rename /nope")
    m.refused(Rename("/", "/x", m.now), InvalidArgumentError, "root directory cannot be renamed")
    m.refused(Rename("/a", "/", m.now), AlreadyExistsError, "root directory already exists")
    m.refused(Rename("/a", "/a/b/x", m.now), InvalidArgumentError, "cannot move a directory inside itself")
    m.refused(Rename("/a", "/nope/x", m.now), NotFoundError, "destination directory /nope does not exist")
    m.refused(Rename("/a", "/f/x", m.now), ConflictError, "/f is a file")
    m.refused(Rename("/f", "/c", m.now), AlreadyExistsError, "destination is an existing directory")
    m.refused(Rename("/f", "/g", m.now), AlreadyExistsError, "destination file exists")
    m.refused(Rename("/a", "/g", m.now, overwrite=True), ConflictError, "cannot replace a file with a directory")
    m.refused(Rename("/f", "bad", m.now), InvalidArgumentError, "not absolute")


def test_rename_overwrite_replaces_destination_file_atomically(m: Master) -> None:
    servers = m.servers(3)
    src_id, _ = m.create("/src", holder="w1")
    dst_id, dst_lease = m.create("/dst", holder="w2")
    m.add_chunk(dst_id, dst_lease, tuple(servers))
    m.refused(Rename("/src", "/dst", m.now, overwrite=True), ConflictError, "rename /dst", "open for writing by 'w2'")
    m.tick(61 + SMALL.takeover_grace_ns / 1e9)
    result = m.ok(Rename("/src", "/dst", m.now, overwrite=True))
    assert result.freed_chunks == 1 and m.sm.stat("/dst").inode == src_id and not m.sm.exists("/src")


def test_rename_checks_bounds_of_every_moved_path() -> None:
    m = Master(NamespaceConfig(max_depth=4))
    m.ok(Mkdir("/a/b/c", m.now, parents=True))
    m.ok(Mkdir("/x/y", m.now, parents=True))
    m.refused(Rename("/a", "/x/y/a", m.now), InvalidArgumentError, "max_depth 4")
    m.ok(Rename("/a", "/x/a", m.now))


def test_rename_into_a_full_directory_is_refused() -> None:
    m = Master(NamespaceConfig(max_entries_per_dir=1))
    m.ok(Mkdir("/a", m.now))
    m.ok(Create("/a/f", m.now))
    m.refused(Rename("/a/f", "/g", m.now), InvalidArgumentError, "max_entries_per_dir 1")
    m.ok(Rename("/a/f", "/a/g", m.now))  # within the same directory: no new entry


# -- delete -------------------------------------------------------------------------------------------------------


def test_delete_file_empty_dir_and_recursive(m: Master) -> None:
    servers = m.servers(3)
    m.ok(Mkdir("/d/e", m.now, parents=True))
    file_id, lease = m.create("/d/e/f")
    m.add_chunk(file_id, lease, tuple(servers))
    m.ok(Create("/d/g", m.now))
    m.refused(Delete("/d", m.now), ConflictError, "directory is not empty (2 entries)")
    m.refused(Delete("/", m.now, recursive=True), InvalidArgumentError, "root directory cannot be deleted")
    m.refused(Delete("/nope", m.now), NotFoundError, "delete /nope")
    assert m.ok(Delete("/d/g", m.now)).files == 1
    m.refused(Delete("/d", m.now, recursive=True), ConflictError, "delete /d/e/f", "open for writing")
    result = m.ok(Delete("/d", m.now, recursive=True, force=True))
    assert (result.files, result.dirs, result.freed_chunks) == (1, 2, 1)
    assert not m.sm.exists("/d") and not m.sm.chunks_on(servers[0])
    m.ok(Mkdir("/empty", m.now))
    assert m.ok(Delete("/empty", m.now)).dirs == 1


def test_set_replication(m: Master) -> None:
    m.ok(Create("/f", m.now, replication=3, min_write_replicas=3))
    status = m.ok(SetReplication("/f", 2, m.now))
    assert status.replication == 2 and status.min_write_replicas == 2
    m.refused(SetReplication("/f", 0, m.now), InvalidArgumentError, "replication 0 outside")
    m.ok(Mkdir("/d", m.now))
    m.refused(SetReplication("/d", 2, m.now), ConflictError, "set_replication /d: is a directory")


def test_clock_never_moves_backwards(m: Master) -> None:
    m.ok(Mkdir("/a", 100))
    m.ok(Mkdir("/b", 50))  # a leader with a slower clock
    assert m.sm.clock_ns == 100 and m.sm.stat("/b").ctime_ns == 100


def test_a_writer_removes_the_file_it_holds_the_lease_on(m: Master) -> None:
    file_id, lease = m.create("/up/x", holder="me", parents=True)
    other_id, other = m.create("/up/y", holder="someone")
    m.refused(Delete("/up/x", m.now), ConflictError, "open for writing by 'me'")  # a stranger may not
    m.refused(Delete("/up/y", m.now, lease_id=lease), ConflictError, "stale")  # nor the writer, another file
    m.refused(Delete("/up", m.now, recursive=True, lease_id=lease), InvalidArgumentError, "names a file")
    result = m.ok(Delete("/up/x", m.now, lease_id=lease))  # a failed upload takes back what it created
    assert result.files == 1 and not m.sm.exists("/up/x") and m.sm.exists("/up/y")
    assert other_id != file_id and other != lease


def test_disk_usage_of_a_tree_and_of_each_entry(m: Master) -> None:
    m.servers(3)
    for path, replication in (("/du/a/one", 3), ("/du/a/two", 1), ("/du/b", 2)):
        file_id, lease = m.create(path, parents=True, replication=replication)
        m.add_chunk(file_id, lease, ("cs0", "cs1", "cs2")[:replication])
        m.ok(CloseFile(file_id, lease, m.now, last_chunk_length=100, seal_last=True))
    total, entries = m.sm.disk_usage("/du/")
    assert (total.path, total.files, total.dirs, total.bytes, total.replicated_bytes) == ("/du", 3, 2, 300, 600)
    assert [(e.path, e.kind, e.files, e.bytes, e.replicated_bytes) for e in entries] == [
        ("/du/a", NodeKind.DIR, 2, 200, 400),
        ("/du/b", NodeKind.FILE, 1, 100, 200),
    ]
    one, none = m.sm.disk_usage("/du/a/one")
    assert (one.kind, one.bytes, one.replicated_bytes, none) == (NodeKind.FILE, 100, 300, ())
    root, _ = m.sm.disk_usage("/")
    assert root.path == "/" and root.bytes == 300
    with pytest.raises(NotFoundError):
        m.sm.disk_usage("/du/nope")
