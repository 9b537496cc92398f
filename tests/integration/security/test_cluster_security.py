"""Zhongkui against real processes: a cluster from `feitian cluster up`, driven through the `feitian` command.

Every refusal class gives its own reason, CLI exit code 6, and a line in the refusing server's log.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from feitian.deploy.cluster import LocalCluster
from feitian.errors import FeitianError, UnauthenticatedError
from feitian.rpc import Client, ClientConfig, Health
from feitian.runtime.eventloop import run
from feitian.security import (
    CapabilityChain,
    KeyPair,
    issue_capability,
    load_private_key,
    new_capability,
    sign_capability,
)
from feitian.security.identity_files import write_capabilities
from feitian.testing.cli import feitian
from feitian.testing.waiting import wait_until

pytestmark = pytest.mark.timeout(180)
HOUR_NS = 3600 * 10**9


@dataclass
class World:
    dir: Path
    users: Path
    state: dict[str, object]

    def address(self, name: str) -> str:
        procs = {p["name"]: p for p in self.state["processes"]}  # type: ignore[attr-defined]
        return str(procs[name]["addresses"][0])

    def log(self, name: str) -> str:
        return (self.dir / "logs" / f"{name}.log").read_text(errors="replace")

    def key(self, name: str) -> KeyPair:
        return load_private_key(self.users / f"{name}.key")

    @property
    def authority_key(self) -> KeyPair:
        return load_private_key(self.dir / "security" / "authority.key")

    def chain(self, holder: KeyPair, resource: str = "echo:/text", *, now_ns: int | None = None, **kw: int) -> bytes:
        return issue_capability(
            self.authority_key,
            holder_key=holder.public_key,
            holder_name=holder.name,
            resources=[resource],
            rights=["read"],
            now_ns=now_ns or time.time_ns(),
            **kw,
        ).to_bytes()

    def caps_file(self, name: str, *chains: bytes) -> str:
        path = self.users / f"{name}.test.caps"
        write_capabilities(path, list(chains))
        return str(path)

    def cli(self, *args: str) -> tuple[int, str, str]:
        proc = feitian(*args, "--cluster", str(self.dir), timeout=60)
        return proc.returncode, proc.stdout, proc.stderr

    def call_as(self, user: str, *extra: str, node: str = "echo-1", method: str = "echo.text") -> tuple[int, str]:
        code, out, err = self.cli(
            "rpc", "call", node, method, "--text", "hi", "--identity", self.key_path(user), *extra
        )
        return code, out + err

    def key_path(self, user: str) -> str:
        return str(self.users / f"{user}.key")

    def new_user(self, user: str) -> None:
        feitian("key", "create", user, "--dir", str(self.users), check=True)
        feitian(
            "user", "add", user, "--pubkey", str(self.users / f"{user}.pub"), "--cluster", str(self.dir), check=True
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("zk") / "cluster"
    users = directory.parent / "users"
    # No Fuxi: nothing here uses it, and its six nodes would double the start-up time.
    up = feitian(
        "cluster", "up", "--dir", str(directory), "--echo", "2", "--no-proxy", "--fuxi-masters", "0", "--json",
        check=True,
    )  # fmt: skip
    try:
        w = World(directory, users, json.loads(up.stdout))
        for user in ("alice", "bob"):
            w.new_user(user)
        feitian(
            "policy", "grant", "alice", "--resource", "echo:/text", "--resource", "echo:/whoami", "--rights", "read",
            "--cluster", str(directory), check=True,
        )  # fmt: skip
        yield w
    finally:
        LocalCluster(str(directory)).down(grace_s=5)


def refused(world: World, code_and_text: tuple[int, str], reason: str, node: str = "echo-1") -> None:
    code, text = code_and_text
    assert code == 6, text
    assert f"[reason={reason}]" in text, text
    wait_until(lambda: f"[reason={reason}]" in world.log(node), 10, f"{node} logs the {reason} refusal")


def test_key_files_are_private_and_loose_ones_are_refused(world: World) -> None:
    key_file = world.users / "alice.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert (world.users / "alice.pub").read_text().startswith("feitian-ed25519 ")
    shown = feitian("key", "show", str(key_file), check=True)
    assert shown.stdout == (world.users / "alice.pub").read_text()
    loose = world.users / "loose.key"
    loose.write_bytes(key_file.read_bytes())
    loose.chmod(0o644)
    for proc in (
        feitian("key", "show", str(loose)),
        feitian("rpc", "ping", "echo-1", "--identity", str(loose), "--cluster", str(world.dir)),
    ):
        assert proc.returncode == 2, proc.stderr
        assert "has mode 0644" in proc.stderr and "hint: chmod 600" in proc.stderr


def test_the_cluster_runs_nothing_unauthenticated(world: World) -> None:
    async def plain_health(address: str) -> BaseException:
        async with Client(ClientConfig(name="plain", connect_timeout_s=1)) as client:
            try:
                await client.call(address, Health(), timeout=5)
            except FeitianError as exc:
                return exc
        raise AssertionError(f"{address} answered a client without a certificate")

    names = [p["name"] for p in world.state["processes"]]  # type: ignore[attr-defined]
    assert set(names) >= {"authority", "echo-1", "echo-2", "kv-1", "kv-2", "kv-3", "coord-1", "coord-2", "coord-3"}
    assert {n for n in names if n.startswith(("dfs-master-", "chunkserver-"))} == {
        "dfs-master-1", "dfs-master-2", "dfs-master-3", "chunkserver-1", "chunkserver-2", "chunkserver-3",
        "chunkserver-4",
    }  # fmt: skip
    for name in names:
        exc = run(plain_health(world.address(name)))
        assert isinstance(exc, UnauthenticatedError) and exc.fields["reason"] == "tls_required", exc
        wait_until(lambda n=name: "[reason=tls_required]" in world.log(n), 10, f"{name} logs the plaintext client")
    # Not even a TLS handshake completes without a certificate from the cluster's authority.
    host, port = world.address("echo-2").removeprefix("tcp://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"\x16\x03\x01\x00\x05hello" + b"\x00" * 64)
        sock.settimeout(5)
        while sock.recv(4096):
            pass
    wait_until(lambda: "[reason=tls_handshake]" in world.log("echo-2"), 10, "echo-2 logs the failed handshake")
    code, out, err = world.cli("cluster", "status", "--json")
    assert code == 0 and {r["state"] for r in json.loads(out)["processes"]} == {"ok"}, err


def test_a_user_gets_what_the_policy_grants_and_nothing_else(world: World) -> None:
    code, text = world.call_as("alice", method="echo.whoami")
    assert code == 0 and text.startswith("alice (user "), text
    assert world.call_as("alice") == (0, "hi\n")
    code, out, err = world.cli("cap", "show", "--identity", world.key_path("alice"), "--json")
    assert code == 0, err
    assert {tuple(c["resources"]) for c in json.loads(out)} == {("echo:/text",), ("echo:/whoami",)}
    refused(world, world.call_as("bob"), "missing")  # bob is registered but the policy grants him nothing
    code, text = world.call_as("alice", method="echo.map")  # a map method: its rule is echo:/map
    assert code in (2, 6), text  # (a string to a map method is a bad request; either way not served)
    code, out, err = world.cli(
        "rpc", "call", "echo-1", "echo.map", "--map", "k=v", "--identity", world.key_path("alice")
    )
    refused(world, (code, out + err), "not_granted")
    code, out, err = world.cli("policy", "ls", "--identity", world.key_path("alice"))
    assert code == 6 and "[reason=not_granted]" in err, err  # only the admin manages the policy
    wait_until(lambda: "refused authority.PolicyList for alice" in world.log("authority"), 10, "authority logs it")


@pytest.mark.parametrize(
    "case",
    ["missing", "truncated", "bad_signature", "expired", "untrusted_issuer", "widened_delegation", "wrong_holder"],
)
def test_each_bad_capability_is_refused_with_its_own_reason(world: World, case: str) -> None:
    alice, bob = world.key("alice"), world.key("bob")
    good = world.chain(alice)
    if case == "missing":
        chains = []
    elif case == "truncated":
        chains = [good[: len(good) // 2]]
    elif case == "bad_signature":
        link = CapabilityChain.from_bytes(good).links[0]
        forged = type(link)(body=link.body, signature=bytes(64))
        chains = [CapabilityChain(links=(forged,)).to_bytes()]
    elif case == "expired":
        chains = [world.chain(alice, now_ns=time.time_ns() - 2 * HOUR_NS, ttl_ns=HOUR_NS)]
    elif case == "untrusted_issuer":
        mallory = KeyPair.generate("mallory")
        chains = [issue_capability(mallory, holder_key=alice.public_key, holder_name="alice", resources=["*"],
                                   rights=["admin"], now_ns=time.time_ns()).to_bytes()]  # fmt: skip
    elif case == "widened_delegation":
        # bob holds read on echo:/text with depth 1 and hands alice more than he has (write on everything).
        parent = CapabilityChain.from_bytes(world.chain(bob, max_depth=1))
        widened = new_capability(
            issuer_key=bob.public_key, holder_key=alice.public_key, holder_name="alice", resources=["echo:/"],
            rights=["read", "write"], not_before_ns=time.time_ns(), expires_ns=parent.leaf.expires_ns,
            max_depth=0, parent_id=parent.leaf.id,
        )  # fmt: skip
        chains = [CapabilityChain(links=(*parent.links, sign_capability(widened, bob))).to_bytes()]
    else:  # wrong_holder: bob's capability presented by alice
        chains = [world.chain(bob)]
    path = world.caps_file(f"alice-{case}", *chains)
    refused(world, world.call_as("alice", "--capability", path), case)


def test_revocation_by_id_and_by_holder_within_the_bound(world: World) -> None:
    """Open connections and new ones honour a revocation within the bound (30 s); here it is near instant."""
    code, out, err = world.cli(
        "cap", "request", "--resource", "echo:/text", "--rights", "read", "--out", str(world.users / "one.caps"),
        "--identity", world.key_path("alice"), "--json",
    )  # fmt: skip
    assert code == 0, err
    cap_id = json.loads(out)[0]["id"]
    assert world.call_as("alice", "--capability", str(world.users / "one.caps"))[0] == 0
    code, out, err = world.cli("cap", "revoke", "--id", cap_id)
    assert code == 0 and "revocation list version" in out, err
    started = time.monotonic()
    wait_until(lambda: world.call_as("alice", "--capability", str(world.users / "one.caps"))[0] == 6, 30, "revoked id")
    refused(world, world.call_as("alice", "--capability", str(world.users / "one.caps")), "revoked_id")
    assert world.call_as("alice")[0] == 0  # alice's other capabilities still work

    # A holder: dave gets a grant, holds a connection open, and is revoked while it is open.
    world.new_user("dave")
    world.cli("policy", "grant", "dave", "--resource", "echo:/text", "--rights", "read")
    assert world.call_as("dave")[0] == 0
    security = LocalCluster(str(world.dir))

    async def hold_open_then_poll() -> str:
        client = await security.client(ClientConfig(name="dave"), identity=world.key_path("dave"))
        async with client:
            address = world.address("echo-2")
            assert await client.call_text(address, "echo.text", "before", timeout=5) == "before"
            code, _, err = world.cli("cap", "revoke", "--holder", "dave")
            assert code == 0, err
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    await client.call_text(address, "echo.text", "after", timeout=5)
                except UnauthenticatedError as exc:
                    return str(exc.fields.get("reason"))
            raise AssertionError("dave's open connection was not refused within the bound")

    assert run(hold_open_then_poll()) == "revoked_holder"
    assert time.monotonic() - started < 60
    refused(world, world.call_as("dave", node="echo-2"), "revoked_holder", node="echo-2")


def test_tokens_once_only_and_for_their_audience(world: World) -> None:
    token = world.users / "for-echo-1.tok"
    code, _, err = world.cli(
        "token", "mint", "--audience", "echo-1", "--resource", "echo:/text", "--rights", "read",
        "--holder-pubkey", str(world.users / "bob.pub"), "--out", str(token), "--identity", world.key_path("alice"),
    )  # fmt: skip
    assert code == 0, err
    empty = world.caps_file("nothing")
    assert world.call_as("bob", "--capability", empty, "--token", str(token)) == (0, "hi\n")
    refused(world, world.call_as("bob", "--capability", empty, "--token", str(token)), "replayed")
    other = world.users / "for-echo-2.tok"
    world.cli(
        "token", "mint", "--audience", "echo-2", "--resource", "echo:/text", "--rights", "read",
        "--out", str(other), "--identity", world.key_path("alice"),
    )  # fmt: skip
    refused(world, world.call_as("bob", "--capability", empty, "--token", str(other)), "wrong_audience")
    assert base64.b64decode(token.read_text())  # a token file is base64 text


def test_service_to_service_calls_are_checked_like_users(world: World) -> None:
    code, out, err = world.cli("rpc", "call", "echo-1", "echo.relay", "--map", "target=echo-2", "--map", "text=yo")
    assert code == 0 and "reply=yo" in out and "relayed_by=echo-1" in out, err
    # echo-1's policy allows echo.text on other echo nodes, not echo.whoami: echo-2 refuses echo-1 itself.
    code, out, err = world.cli(
        "rpc", "call", "echo-1", "echo.relay", "--map", "target=echo-2", "--map", "method=echo.whoami"
    )
    refused(world, (code, out + err), "not_granted", node="echo-2")
    assert "refused echo.whoami for echo-1 (service" in world.log("echo-2")
    # ... and a user may not make a service act for it beyond the user's own rights: alice cannot relay.
    code, out, err = world.cli(
        "rpc", "call", "echo-1", "echo.relay", "--map", "target=echo-2", "--identity", world.key_path("alice")
    )
    refused(world, (code, out + err), "not_granted")


def test_policy_commands(world: World) -> None:
    code, out, err = world.cli("policy", "grant", "alice", "--resource", "echo:/bytes", "--rights", "write", "--json")
    assert code == 0, err
    entries = {(e["principal"], e["resource"]): e["rights"] for e in json.loads(out)["entries"]}
    assert entries[("alice", "echo:/bytes")] == ["write"]
    code, out, err = world.cli("policy", "ls", "--json")
    assert ("admin", "*") in {(e["principal"], e["resource"]) for e in json.loads(out)["entries"]}
    code, out, err = world.cli("policy", "revoke", "alice", "--resource", "echo:/bytes", "--json")
    assert code == 0 and ("alice", "echo:/bytes") not in {
        (e["principal"], e["resource"]) for e in json.loads(out)["entries"]
    }
    code, _, err = world.cli("policy", "revoke", "alice", "--resource", "echo:/nothing")
    assert code == 4 and "no matching entry" in err
    code, _, err = world.cli("policy", "grant", "nobody", "--resource", "echo:/x", "--rights", "read")
    assert code == 4 and "feitian user add" in err
    code, _, err = world.cli("cap", "request", "--resource", "echo:/map", "--rights", "read", "--identity",
                             world.key_path("alice"))  # fmt: skip
    assert code == 6 and "[reason=not_granted]" in err


def test_files_in_the_security_directory_are_private(world: World) -> None:
    security = world.dir / "security"
    assert stat.S_IMODE(security.stat().st_mode) == 0o700
    for path in [security / "authority.key", *security.glob("identities/*.key")]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert os.access(security / "ca.pem", os.R_OK)
