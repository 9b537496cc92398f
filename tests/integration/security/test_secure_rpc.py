"""Kuafu with Zhongkui, in process over real sockets: mutual TLS, credentials on the connection, per-call checks."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest
from zk_world import SECOND_NS, Get, Pki, guarded_server, reason

from feitian.deploy.cluster import free_ports
from feitian.errors import (
    InvalidArgumentError,
    PermissionDeniedError,
    UnauthenticatedError,
    UnavailableError,
)
from feitian.rpc import CallContext, Client, ClientConfig, Health, Request
from feitian.rpc.proxy import Proxy, ProxyConfig
from feitian.security import (
    CapabilityChain,
    PrincipalKind,
    RevocationList,
    TlsIdentity,
    capability_id,
    mint_token,
    new_nonce,
)
from feitian.security.kuafu import CapabilitySet, ClientIdentity, ServerGuard
from feitian.testing.rpc import serving

pytestmark = pytest.mark.timeout(60)


def fast(name: str = "t") -> ClientConfig:
    return ClientConfig(name=name, connect_timeout_s=1.0)


def free_port() -> int:
    (port,) = free_ports(1)
    return port


async def test_calls_are_checked_before_they_queue(caplog: pytest.LogCaptureFixture) -> None:
    pki = Pki()
    world = guarded_server(pki)
    alice, alice_tls = pki.identity("alice")
    async with serving(world.server) as (server, addr), pki.client(alice_tls, pki.chain(alice)) as client:
        assert await client.call(addr, Get("/apps/web"), timeout=5) == "alice read /apps/web"
        completed = server.lane_stats()["default"]["completed"]
        with pytest.raises(PermissionDeniedError) as info:
            await client.call(addr, Get("/etc/passwd"), timeout=5)
        assert reason(info.value) == "not_granted"
        assert "alice" in info.value.message and "coord:/etc/passwd" in info.value.message
        assert world.ran == ["/apps/web"]  # the refused call never ran
        assert server.lane_stats()["default"]["completed"] == completed  # ... and never queued
        for _ in range(5):
            await client.call(addr, Get("/apps/web"), timeout=5)
        (conn,) = server._connections
        assert conn.auth.authorizer.hits >= 5  # decisions are cached per connection
        assert conn.peer.principal.name == "alice" and conn.peer.name == "alice"
    assert world.guard.refusals["not_granted"] == 1
    assert any("reason=not_granted" in r.getMessage() for r in caplog.records)


async def test_health_needs_authentication_only_and_plaintext_is_refused() -> None:
    pki = Pki()
    world = guarded_server(pki)
    _, bob_tls = pki.identity("bob")
    async with serving(world.server) as (_, addr):
        async with Client(fast(), tls=ClientIdentity(bob_tls)) as client:
            assert (await client.call(addr, Health(), timeout=5)).status == "ok"
        async with Client(fast("plain")) as plain:
            with pytest.raises(UnauthenticatedError) as info:
                await plain.call(addr, Health(), timeout=5)
        assert reason(info.value) == "tls_required"
    assert world.guard.refusals["tls_required"] == 1


async def test_certificates_from_another_authority_are_refused_by_both_sides() -> None:
    pki, other = Pki(), Pki(cluster="other")
    world = guarded_server(pki)
    eve_key, eve_foreign = other.identity("eve")
    # eve trusts our CA (so the handshake gets as far as the server checking her certificate)
    eve = TlsIdentity(eve_key, eve_foreign.certificate_pem, pki.ca.certificate_pem())
    _, alice_tls = pki.identity("alice")
    rogue = guarded_server(other, "rogue")
    async with serving(world.server) as (_, addr), serving(rogue.server) as (_, rogue_addr):
        async with Client(fast(), tls=ClientIdentity(eve)) as client:
            with pytest.raises(UnauthenticatedError, match="refused this client's certificate") as info:
                await client.call(addr, Health(), timeout=5)
            assert reason(info.value) == "tls_handshake"
        async with Client(fast(), tls=ClientIdentity(alice_tls)) as client:
            with pytest.raises(UnauthenticatedError, match="certificate verify failed") as info:
                await client.call(rogue_addr, Health(), timeout=5)
            assert reason(info.value) == "tls_handshake"
    assert world.guard.refusals["tls_handshake"] == 1


async def test_a_server_must_be_a_cluster_service() -> None:
    pki = Pki()
    world = guarded_server(pki)
    _, mallory_user_cert = pki.identity("mallory", PrincipalKind.USER)
    world.server.security = ServerGuard(world.guard, mallory_user_cert)  # a user's certificate on a server
    _, alice_tls = pki.identity("alice")
    async with serving(world.server) as (_, addr), Client(fast(), tls=ClientIdentity(alice_tls)) as client:
        with pytest.raises(UnauthenticatedError) as info:
            await client.call(addr, Health(), timeout=5)
    assert reason(info.value) in {"tls_handshake", "not_a_service"}


def _forged(chain: bytes) -> bytes:
    decoded = CapabilityChain.from_bytes(chain)
    link = decoded.links[0]
    bad = type(link)(body=link.body, signature=bytes([link.signature[0] ^ 1]) + link.signature[1:])
    return CapabilityChain(links=(bad,)).to_bytes()


@pytest.mark.parametrize(
    ("case", "expected", "cls"),
    [
        ("expired", "expired", UnauthenticatedError),
        ("forged", "bad_signature", UnauthenticatedError),
        ("truncated", "truncated", UnauthenticatedError),
        ("foreign", "untrusted_issuer", UnauthenticatedError),
        ("stolen", "wrong_holder", PermissionDeniedError),
        ("revoked", "revoked_id", UnauthenticatedError),
    ],
)
async def test_a_refused_credential_fails_the_connection_with_its_reason(
    case: str, expected: str, cls: type[Exception]
) -> None:
    pki = Pki()
    world = guarded_server(pki)
    alice, alice_tls = pki.identity("alice")
    bob, _ = pki.identity("bob")
    good = pki.chain(alice)
    chain = {
        "expired": pki.chain(alice, ttl_s=60, age_s=120),
        "forged": _forged(good),
        "truncated": good[:-7],
        "foreign": Pki().chain(alice),
        "stolen": pki.chain(bob),
        "revoked": good,
    }[case]
    if case == "revoked":
        world.revoke(RevocationList().revoke_id(capability_id(CapabilityChain.from_bytes(good).leaf), until_ns=2**62))
    async with serving(world.server) as (_, addr), pki.client(alice_tls, chain) as client:
        with pytest.raises(cls) as info:
            await client.call(addr, Get("/apps/x"), timeout=5)
    assert reason(info.value) == expected
    assert world.ran == []
    assert world.guard.refusals[expected] == 1


async def test_tokens_are_accepted_once_and_only_by_their_audience() -> None:
    pki = Pki()
    world = guarded_server(pki, "svc")
    alice, alice_tls = pki.identity("alice")
    bob, bob_tls = pki.identity("bob")
    issuer = CapabilityChain.from_bytes(pki.chain(alice, ("coord:/jobs",), ("read",)))

    def token(audience: str) -> bytes:
        return mint_token(
            alice,
            issuer,
            audience=audience,
            resources=["coord:/jobs/7"],
            rights=["read"],
            now_ns=world.clock.wall_ns(),
            nonce=new_nonce(),
            holder_key=bob.public_key,
        ).to_bytes()

    for_svc = token("svc")
    async with serving(world.server) as (_, addr):
        async with Client(fast(), tls=ClientIdentity(bob_tls)) as client:
            reply = await client.present_token(addr, for_svc, timeout=5)
            assert reply.holder_id == bob.principal_id
            assert await client.call(addr, Get("/jobs/7/log"), timeout=5) == "bob read /jobs/7/log"
            with pytest.raises(PermissionDeniedError):
                await client.call(addr, Get("/jobs/8"), timeout=5)
        async with Client(fast(), tls=ClientIdentity(bob_tls)) as client:
            with pytest.raises(UnauthenticatedError) as info:
                await client.present_token(addr, for_svc, timeout=5)
            assert reason(info.value) == "replayed"
            with pytest.raises(UnauthenticatedError) as info:
                await client.present_token(addr, token("other-svc"), timeout=5)
            assert reason(info.value) == "wrong_audience"
        async with Client(fast(), tls=ClientIdentity(alice_tls)) as client:
            with pytest.raises(PermissionDeniedError) as info:  # bound to bob
                await client.present_token(addr, token("svc"), timeout=5)
            assert reason(info.value) == "wrong_holder"


async def test_capabilities_are_presented_again_after_a_reconnect_and_renewed_in_place() -> None:
    pki = Pki()
    world = guarded_server(pki)
    alice, alice_tls = pki.identity("alice")
    addr = f"tcp://127.0.0.1:{free_port()}"
    credentials = CapabilitySet([pki.chain(alice, ("coord:/a",))])
    async with Client(fast(), tls=ClientIdentity(alice_tls), credentials=credentials) as client:
        async with serving(world.server, addr):
            assert await client.call(addr, Get("/a/1"), timeout=5) == "alice read /a/1"
        world2 = guarded_server(pki)
        world2.server.security = world.server.security  # the same guard, a new server on the same port
        async with serving(world2.server, addr):
            assert await client.call(addr, Get("/a/2"), timeout=5, idempotent=True) == "alice read /a/2"
            credentials.replace([pki.chain(alice, ("coord:/b",))])
            await client.refresh_credentials()
            assert await client.call(addr, Get("/b/1"), timeout=5) == "alice read /b/1"


async def test_revocations_reach_open_connections_and_a_stale_list_fails_closed() -> None:
    pki = Pki()
    world = guarded_server(pki)
    alice, alice_tls = pki.identity("alice")
    chain = pki.chain(alice)
    async with serving(world.server) as (_, addr):
        async with pki.client(alice_tls, chain) as client:
            await client.call(addr, Get("/apps/1"), timeout=5)
            world.clock.mono_offset_ns += 31 * SECOND_NS  # no refresh for longer than the bound
            with pytest.raises(UnavailableError) as info:
                await client.call(addr, Get("/apps/2"), timeout=5)
            assert reason(info.value) == "revocations_stale"
            with pytest.raises(UnavailableError):
                await client.call(addr, Health(), timeout=5)
            leaf = CapabilityChain.from_bytes(chain).leaf
            world.revoke(RevocationList().revoke_id(leaf.id, until_ns=2**62))
            with pytest.raises(UnauthenticatedError) as info:
                await client.call(addr, Get("/apps/3"), timeout=5)
            assert reason(info.value) == "revoked_id"
            world.revoke(RevocationList(5).revoke_holder(alice.principal_id))
            with pytest.raises(UnauthenticatedError) as info:
                await client.call(addr, Health(), timeout=5)
            assert reason(info.value) == "revoked_holder"
        async with Client(fast(), tls=ClientIdentity(alice_tls)) as client:  # a new connection: refused at once
            with pytest.raises(UnauthenticatedError) as info:
                await client.call(addr, Health(), timeout=5)
            assert reason(info.value) == "revoked_holder"


class Digest(Request[bytes], frozen=True, tag="test.Digest"):
    pass


async def test_bulk_payloads_and_many_small_calls_over_tls(tmp_path: Path) -> None:
    pki = Pki()
    world = guarded_server(pki)

    async def digest(ctx: CallContext, req: Digest) -> bytes:
        ctx.reply_payload = bytes(ctx.payload[:1000])
        return hashlib.sha256(ctx.payload).digest()

    world.server.add_handler(Digest, digest)
    _, alice_tls = pki.identity("alice")
    sock = str(tmp_path / "svc.sock")
    async with (
        serving(world.server, "tcp://127.0.0.1:0", f"unix://{sock}") as (_, addr),
        Client(fast(), tls=ClientIdentity(alice_tls)) as client,
    ):
        blobs = [os.urandom(n) for n in (1, 70_000, 3 << 20, 9 << 20)]
        for target in (addr, f"unix://{sock}"):
            replies = await asyncio.gather(*(client.call_full(target, Digest(), payload=b, timeout=30) for b in blobs))
            assert [r.value for r in replies] == [hashlib.sha256(b).digest() for b in blobs]
            assert [bytes(r.payload) for r in replies] == [b[:1000] for b in blobs]
        healths = await asyncio.gather(*(client.call(addr, Health(), timeout=10) for _ in range(500)))
        assert {h.status for h in healths} == {"ok"}


async def test_the_proxy_refuses_to_forward_when_secured(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pki = Pki()
    _, alice_tls = pki.identity("alice")
    with pytest.raises(InvalidArgumentError, match="cannot use the per-machine proxy"):
        Client(ClientConfig(proxy_path="/x.sock"), tls=ClientIdentity(alice_tls))
    path = str(tmp_path / "proxy.sock")
    proxy = Proxy(ProxyConfig(socket_path=path, secured=True))
    await proxy.start()
    try:
        async with Client(ClientConfig(proxy_path=path, connect_timeout_s=1)) as client:
            with pytest.raises(PermissionDeniedError) as info:
                await client.call("tcp://127.0.0.1:1", Health(), timeout=5)
        assert reason(info.value) == "proxy_disabled"
        assert any(f"pid {os.getpid()} uid {os.getuid()}" in r.getMessage() for r in caplog.records)
        assert proxy.upstream_count == 0
    finally:
        await proxy.stop()


async def test_credentials_need_tls() -> None:
    with pytest.raises(InvalidArgumentError):
        Client(credentials=CapabilitySet())  # type: ignore[call-arg]
