"""Applications' own identities in a secured cluster (ZK-3): a submitter delegates some of its capabilities to
its application (`--grant`); the application's processes reach Pangu with exactly those, under a principal of
their own, which is retired when the application ends. Real processes: Nuwa, Pangu, the authority, FuxiMaster,
a Tubo."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from feitian.dfs import DfsClient
from feitian.errors import InvalidArgumentError, PermissionDeniedError
from feitian.rpc import Client
from feitian.sched import app_credentials
from feitian.sched.messages import AppCredentials, AppState, SubmitApp
from feitian.security import KeyPair, RevocationList, issue_capability
from feitian.security.authority import ListPrincipals
from feitian.security.authority.messages import GetRevocations
from feitian.testing.sched import SchedCluster
from feitian.testing.waiting import wait_for_condition

SCRIPT = str(Path(__file__).with_name("app_identity_script.py"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchedCluster]:
    directory = tmp_path_factory.mktemp("fuxi-identity")
    with SchedCluster.running(
        directory, coord=1, masters=1, machines=1, secure=True, dfs_masters=1, chunkservers=1
    ) as c:
        yield c


async def _principals(rpc: Client, authority: str) -> dict[str, str]:
    return {p.name: p.id for p in await rpc.call(authority, ListPrincipals(), timeout=10)}


async def test_an_application_reaches_pangu_with_what_its_submitter_delegated(cluster: SchedCluster) -> None:
    sched = await cluster.client()
    rpc = sched.rpc
    authority = cluster.cluster.load().authority
    try:
        before = await _principals(rpc, authority)
        app = await sched.submit(
            "ident",
            [sys.executable, SCRIPT, "/jobs/ident", "/jobs/other"],
            grants=[("dfs:/jobs/ident/", ("read", "create", "write"))],
        )
        done = await sched.wait(app.app_id, timeout_s=90)
        assert done.state is AppState.SUCCEEDED, done
        dfs = DfsClient(rpc, cluster.dfs_addresses)
        assert await dfs.read("/jobs/ident/out") == f"written by {app.app_id}".encode()
        assert not await dfs.exists("/jobs/other/out")

        # Its principal was retired when it ended: unregistered, and revoked until its capabilities expire.
        async def retired() -> bool:
            now = await _principals(rpc, authority)
            return not [name for name in now if name.startswith("app.") and name not in before]

        await wait_for_condition(retired, timeout_s=30, what="the application's principal retired")
        reply = await rpc.call(authority, GetRevocations(), timeout=10)
        assert RevocationList.from_bytes(reply.data).holders, "the application's key is on the revocation list"
    finally:
        await rpc.close()


async def test_without_grants_a_process_has_no_identity(cluster: SchedCluster) -> None:
    sched = await cluster.client()
    try:
        app = await sched.submit("plain", [sys.executable, SCRIPT, "/jobs/plain", "/jobs/x"], max_attempts=1)
        done = await sched.wait(app.app_id, timeout_s=90)
        assert done.state is AppState.FAILED and done.exit_code == 3, done
    finally:
        await sched.rpc.close()


async def test_credentials_that_do_not_verify_are_refused_at_submit(cluster: SchedCluster) -> None:
    sched = await cluster.client()
    try:
        # Signed by a key that is not the cluster authority's.
        stranger = KeyPair.generate("stranger")
        app_key = KeyPair.generate("app")
        forged = issue_capability(
            stranger,
            holder_key=app_key.public_key,
            holder_name="app",
            resources=["dfs:/"],
            rights=["read"],
            now_ns=time.time_ns(),
        )
        request = SubmitApp(
            name="forged",
            command=["/bin/true"],
            credentials=AppCredentials(seed=app_key.seed(), chains=[forged.to_bytes()]),
        )
        with pytest.raises(InvalidArgumentError, match="credentials are not usable"):
            await sched.router.call(request, leader=True)
    finally:
        await sched.rpc.close()


def test_a_grant_the_submitter_does_not_hold_is_refused_before_submitting() -> None:
    authority = KeyPair.generate("authority")
    user = KeyPair.generate("alice")
    held = issue_capability(
        authority,
        holder_key=user.public_key,
        holder_name="alice",
        resources=["dfs:/home/alice/"],
        rights=["read", "write"],
        now_ns=time.time_ns(),
        max_depth=1,
    )
    creds = app_credentials(user, [held.to_bytes()], [("dfs:/home/alice/in/", ("read",))])
    assert len(creds.chains) == 1
    with pytest.raises(PermissionDeniedError, match=r"dfs:/home/bob/=read; dfs:/home/alice/=admin"):
        app_credentials(user, [held.to_bytes()], [("dfs:/home/bob/", ("read",)), ("dfs:/home/alice/", ("admin",))])
