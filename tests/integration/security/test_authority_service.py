"""The authority service in process: issuing by policy, admin-only changes, the revocation long poll."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from zk_world import Pki, guarded_server, reason

from feitian.errors import InvalidArgumentError, PermissionDeniedError, UnauthenticatedError
from feitian.rpc import Client, ClientConfig
from feitian.security import CapabilityChain, PrincipalKind, RevocationList, verify_chain
from feitian.security.authority.messages import GetRevocations, Issue, PolicyGrant, PolicyList, Revoke
from feitian.security.authority.service import AuthorityService
from feitian.security.authority.store import AuthorityStore
from feitian.testing.rpc import serving
from feitian.testing.waiting import wait_for_condition

pytestmark = pytest.mark.timeout(60)


async def test_issue_by_policy_admin_changes_and_the_long_poll(tmp_path: Path) -> None:
    pki = Pki()
    world = guarded_server(pki, "authority")
    store = AuthorityStore(tmp_path / "authority")
    admin, admin_tls = pki.identity("admin")
    alice, alice_tls = pki.identity("alice")
    for key in (admin, alice):
        store.add_principal(key.name, key.public_key, PrincipalKind.USER)
    store.policy.grant(admin.principal_id, "admin", ["*"], ["admin"])
    service = AuthorityService(store, pki.ca, world.view, world.clock)
    world.server.add_service(service)
    admin_chain = pki.chain(admin, ("*",), ("admin",))
    async with (
        serving(world.server) as (_, addr),
        pki.client(admin_tls, admin_chain) as as_admin,
        pki.client(alice_tls) as as_alice,
    ):
        assert (await as_alice.call(addr, Issue(), timeout=5)).chains == []  # the policy grants nothing yet
        with pytest.raises(PermissionDeniedError) as info:
            await as_alice.call(addr, Issue(("echo:/text",), ("read",)), timeout=5)
        assert reason(info.value) == "not_granted"
        with pytest.raises(UnauthenticatedError) as info:  # admin only: alice presented nothing
            await as_alice.call(addr, PolicyGrant("alice", ("*",), ("admin",)), timeout=5)
        assert reason(info.value) == "missing"
        await as_admin.call(addr, PolicyGrant("alice", ("echo:/",), ("read", "list"), 1), timeout=5)
        issued = await as_alice.call(addr, Issue(("echo:/text",), ("read",), 60, 1), timeout=5)
        grant = verify_chain(
            CapabilityChain.from_bytes(issued.chains[0]),
            authority_key=pki.authority.public_key,
            now_ns=world.clock.wall_ns(),
            revocations=RevocationList(),
        )
        assert grant.holder_id == alice.principal_id  # issued to the authenticated caller
        assert [str(r) for r in grant.resources] == ["echo:/text"] and grant.expires_ns - grant.not_before_ns == 60e9
        with pytest.raises(PermissionDeniedError):  # deeper than the policy allows
            await as_alice.call(addr, Issue(("echo:/text",), ("read",), 60, 2), timeout=5)
        with pytest.raises(InvalidArgumentError):
            await as_alice.call(addr, Issue(ttl_s=10 * 86400), timeout=5)
        entries = (await as_admin.call(addr, PolicyList("alice"), timeout=5)).entries
        assert [(e.principal, e.resource, e.rights) for e in entries] == [("alice", "echo:/", ["read", "list"])]

        # The long poll answers as soon as the list changes.
        current = await as_alice.call(addr, GetRevocations(), timeout=5)
        poll = asyncio.ensure_future(as_alice.call(addr, GetRevocations(current.version, 30.0), timeout=35))
        await wait_for_condition(lambda: service.waiting == 1, 10, "the poll waits for a change")
        assert not poll.done()
        revoked = await as_admin.call(addr, Revoke(holder="alice"), timeout=5)
        answer = await asyncio.wait_for(poll, 10)
        assert answer.version == revoked.version == current.version + 1
        assert RevocationList.from_bytes(answer.data).is_holder_revoked(alice.principal_id, 0)
        assert world.view.current(world.clock.monotonic_ns()).version == answer.version  # its own guard too
    reloaded = AuthorityStore(tmp_path / "authority")
    assert reloaded.revocations.version == answer.version and reloaded.policy.entries(alice.principal_id)


async def test_a_nodes_agent_polls_revocations_and_renews_capabilities(tmp_path: Path) -> None:
    from feitian.security import RevocationView
    from feitian.security.authority.agent import SecurityAgent
    from feitian.security.identity_files import read_capabilities
    from feitian.security.kuafu import CapabilitySet, ClientIdentity

    pki = Pki()
    world = guarded_server(pki, "authority")
    store = AuthorityStore(tmp_path / "authority")
    node, node_tls = pki.identity("echo-9", PrincipalKind.SERVICE)
    admin, admin_tls = pki.identity("admin")
    for key, kind in ((node, PrincipalKind.SERVICE), (admin, PrincipalKind.USER)):
        store.add_principal(key.name, key.public_key, kind)
    store.policy.grant(node.principal_id, "echo-9", ["echo:/text"], ["read"])
    service = AuthorityService(store, pki.ca, world.view, world.clock)
    world.server.add_service(service)
    caps_file = tmp_path / "echo-9.caps"
    old = pki.chain(node, ("echo:/text",), ("read",), ttl_s=60)
    credentials = CapabilitySet([old])
    view = RevocationView()
    async with serving(world.server) as (_, addr):
        client = Client(ClientConfig(name="echo-9"), tls=ClientIdentity(node_tls), credentials=credentials)
        agent = SecurityAgent(
            client=client, credentials=credentials, view=view, authority=addr, clock=world.clock,
            refresh_s=5.0, capabilities_path=str(caps_file),
        )  # fmt: skip
        async with client, pki.client(admin_tls, pki.chain(admin, ("*",), ("admin",))) as as_admin:
            await agent.start(timeout_s=10)
            assert view.current(world.clock.monotonic_ns()).version == 0
            assert await agent.renew() == 1
            assert credentials.capabilities() != [old] and read_capabilities(caps_file) == credentials.capabilities()
            await wait_for_condition(lambda: service.waiting == 1, 10, "the agent long-polls")
            await as_admin.call(addr, Revoke(holder=pki.identity("gone")[0].principal_id), timeout=5)
            await wait_for_condition(
                lambda: view.current(world.clock.monotonic_ns()).version == 1, 10, "the agent installs the change"
            )
            await agent.stop()
