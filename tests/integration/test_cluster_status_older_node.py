"""`cluster status` of a node that does not answer node.Stats (a node of an older version): it still shows, from
kuafu.Health, as before."""

from __future__ import annotations

import os
import time
from pathlib import Path

import msgspec

from feitian import __version__
from feitian.deploy.cluster import ClusterState, LocalCluster, ProcessRecord
from feitian.rpc import Server, ServerConfig
from feitian.runtime.loop_thread import LoopThread
from feitian.runtime.procs import start_time_of


def test_a_node_without_node_stats_shows_from_its_health_answer(tmp_path: Path) -> None:
    lc = LocalCluster(str(tmp_path / "cluster"))
    loop = LoopThread("older-node")
    server = Server(ServerConfig(name="echo-old", role="echo"))  # kuafu.Health only, like a node before node.Stats
    try:
        address = loop.run(server.start(["tcp://127.0.0.1:0"]))[0]
        me = ProcessRecord("echo-old", "echo", os.getpid(), start_time_of(os.getpid()), "", "", [address])
        os.makedirs(lc.dir)
        state = ClusterState("local", lc.dir, __version__, time.time(), [me], secure=False)
        Path(lc.state_path).write_bytes(msgspec.json.encode(state))
        (row,) = lc.status(timeout_s=5)
        assert (row.name, row.state, row.stats) == ("echo-old", "ok", None)
        assert row.detail.startswith("up ") and f"version {__version__}" in row.detail
    finally:
        loop.run(server.stop(grace_s=0.5))
        loop.stop()
