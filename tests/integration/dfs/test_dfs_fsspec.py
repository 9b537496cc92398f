"""The synchronous API (file objects) and ``pangu://`` through fsspec, pandas and pyarrow."""

from __future__ import annotations

from collections.abc import Iterator

import fsspec  # type: ignore[import-untyped]
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feitian.dfs.client.fsspec_adapter import PanguFileSystem
from feitian.dfs.client.sync import SyncDfs
from feitian.errors import InvalidArgumentError
from feitian.testing.dfs import DfsCluster


@pytest.fixture
def pangu(dfs_cluster: DfsCluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[PanguFileSystem]:
    monkeypatch.setenv("FEITIAN_CLUSTER", dfs_cluster.cluster.dir)
    import feitian.dfs.client.client  # noqa: F401 - registers pangu://

    fs = fsspec.filesystem("pangu")
    try:
        yield fs
    finally:
        fs.dfs.close()
        PanguFileSystem.clear_instance_cache()


def test_pandas_csv_and_parquet_roundtrip(pangu: PanguFileSystem) -> None:
    df = pd.DataFrame({"x": range(5000), "y": [f"value {i}" for i in range(5000)], "z": [i / 7 for i in range(5000)]})
    df.to_csv("pangu:///frames/a.csv", index=False)
    pd.testing.assert_frame_equal(pd.read_csv("pangu:///frames/a.csv"), df)
    df.to_parquet("pangu:///frames/a.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet("pangu:///frames/a.parquet"), df)
    table = pa.table({"k": list(range(100))})
    with pangu.open("/frames/b.parquet", "wb") as f:
        pq.write_table(table, f)
    with pangu.open("/frames/b.parquet", "rb") as f:
        assert pq.read_table(f).equals(table)
    assert sorted(pangu.ls("/frames", detail=False)) == ["/frames/a.csv", "/frames/a.parquet", "/frames/b.parquet"]
    assert pangu.info("pangu:///frames/a.csv")["type"] == "file"
    assert pangu.cat_file("/frames/a.csv", 0, 5) == b"x,y,z"


def test_fsspec_filesystem_operations(pangu: PanguFileSystem) -> None:
    pangu.pipe_file("/fs/one", b"1111")
    pangu.makedirs("/fs/dir", exist_ok=True)
    pangu.mv("/fs/one", "/fs/dir/two")
    assert pangu.exists("/fs/dir/two") and not pangu.exists("/fs/one")
    assert pangu.cat_file("/fs/dir/two") == b"1111"
    with pangu.open("/fs/dir/two", "ab") as f:
        f.write(b"22")
    assert pangu.cat_file("/fs/dir/two") == b"111122"
    with pytest.raises(FileNotFoundError):
        pangu.info("/fs/missing")
    pangu.rm("/fs", recursive=True)
    assert not pangu.exists("/fs")


def test_sync_file_objects(dfs_cluster: DfsCluster) -> None:
    with SyncDfs.local(dfs_cluster.cluster.dir) as dfs:
        with dfs.open("/sync/notes.txt", "w") as f:
            f.write("first line\n")
            f.write("第二行\n")
        with dfs.open("/sync/notes.txt", "a") as f:
            f.write("third\n")
        with dfs.open("/sync/notes.txt") as f:
            assert f.readlines() == ["first line\n", "第二行\n", "third\n"]
        with dfs.open("/sync/notes.txt", "rb") as f:
            f.seek(6)
            assert f.read(4) == b"line"
        with dfs.open("/sync/notes.txt", "r+b") as f:
            f.seek(0)
            f.write(b"FIRST")
        assert dfs.read("/sync/notes.txt").startswith(b"FIRST line\n")
        with pytest.raises(InvalidArgumentError, match="mode"):
            dfs.open("/sync/notes.txt", "q")
        assert [e.name for e in dfs.ls("/sync")] == ["notes.txt"]
        assert b"".join(dfs.tail("/sync/notes.txt", follow=False)).endswith(b"third\n")
