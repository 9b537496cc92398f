"""The authority as a process: verifiers fail closed without it, and its policy survives a crash (kill -9)."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import msgspec
import pytest
import tomli_w

from feitian.deploy.cluster import LocalCluster, default_spec
from feitian.errors import FeitianError, UnavailableError
from feitian.rpc import ClientConfig, Health
from feitian.runtime.eventloop import run
from feitian.runtime.procs import ProcessRef, is_running, signal_process, spawn_detached, stop_processes
from feitian.testing.cli import feitian
from feitian.testing.waiting import wait_until

pytestmark = pytest.mark.timeout(120)


def health_error(lc: LocalCluster, address: str) -> FeitianError | None:
    async def go() -> FeitianError | None:
        async with await lc.client(ClientConfig(name="t", connect_timeout_s=1)) as client:
            try:
                await client.call(address, Health(), timeout=3)
            except FeitianError as exc:
                return exc
        return None

    return run(go())


def test_verifiers_fail_closed_without_the_authority_and_its_policy_is_durable(tmp_path: Path) -> None:
    lc = LocalCluster(str(tmp_path / "c"))
    bound = {"revocation_refresh_s": 0.2, "revocation_max_staleness_s": 1.5}
    state = lc.up(default_spec(echo=1, proxy=False, kv=0), security_options=bound)
    restarted: ProcessRef | None = None
    try:
        authority, echo = state.find("authority"), state.find("echo-1")
        granted = feitian(
            "policy", "grant", "echo-1", "--resource", "echo:/map", "--rights", "read", "--cluster", lc.dir
        )  # fmt: skip
        assert granted.returncode == 0, granted.stderr
        assert health_error(lc, echo.addresses[0]) is None

        signal_process(authority.ref, signal.SIGKILL)
        wait_until(lambda: not is_running(authority.ref), 10, "the authority is gone")

        def stale() -> bool:
            exc = health_error(lc, echo.addresses[0])
            return isinstance(exc, UnavailableError) and exc.fields.get("reason") == "revocations_stale"

        wait_until(stale, 15, "echo-1 refuses calls once its revocation list is older than the bound")
        wait_until(lambda: "cannot refresh revocations" in Path(echo.log).read_text(), 20, "echo-1 says why")

        # Restart the authority where it was (same address, same data directory).
        conf = msgspec.toml.decode(Path(authority.config).read_bytes())
        conf["node"]["listen"] = authority.addresses
        Path(authority.config).write_bytes(tomli_w.dumps(conf).encode())
        argv = [sys.executable, "-m", "feitian", "node", "run", "authority", "--config", authority.config]
        restarted = spawn_detached(argv, authority.log)
        wait_until(lambda: health_error(lc, echo.addresses[0]) is None, 20, "echo-1 serves again")
        listed = feitian("policy", "ls", "echo-1", "--json", "--cluster", lc.dir)
        assert listed.returncode == 0, listed.stderr
        assert ("echo:/map", ("read",)) in {
            (e["resource"], tuple(e["rights"])) for e in json.loads(listed.stdout)["entries"]
        }
    finally:
        if restarted is not None:
            stop_processes([restarted], grace_s=5)
        lc.down(grace_s=5)
