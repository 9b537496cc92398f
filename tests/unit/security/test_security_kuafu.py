"""The objects Zhongkui hands to Kuafu: credentials sets, the client's server check, identity files, layers."""

from __future__ import annotations

import ast
import os
import stat
from pathlib import Path

import pytest
from zk_fixtures import ALICE, AUTHORITY, BOB, NOW_NS, SECOND_NS, SERVICE, FakeClock, root

from feitian.errors import AlreadyExistsError, ConfigError, NotFoundError, UnauthenticatedError
from feitian.security import ClusterAuthority, PrincipalKind, TlsIdentity
from feitian.security.identity_files import IdentityFiles, read_capabilities, write_capabilities
from feitian.security.kuafu import CapabilitySet, ClientIdentity, chain_expiry

SRC = Path(__file__).resolve().parents[3] / "src" / "feitian"


def test_capability_set_presents_unexpired_chains_and_renews_by_replacement() -> None:
    clock = FakeClock()
    short = root(ALICE, ttl_ns=60 * SECOND_NS).to_bytes()
    long = root(ALICE, ttl_ns=3600 * SECOND_NS).to_bytes()
    creds = CapabilitySet([short, long], clock=clock)
    assert creds.capabilities() == [short, long]
    assert creds.earliest_expiry() == chain_expiry(short) == NOW_NS + 60 * SECOND_NS
    clock.advance(61 * SECOND_NS)
    assert creds.capabilities() == [long]
    creds.replace([root(BOB).to_bytes()])
    assert len(creds) == 1
    exact = CapabilitySet([short, b"garbage"], clock=clock, drop_expired=False)
    assert exact.capabilities() == [short, b"garbage"]  # presented as given: the server says what is wrong


def test_client_accepts_only_services_as_servers() -> None:
    ca = ClusterAuthority.create(AUTHORITY, cluster_name="t", now_s=NOW_NS / 1e9)
    me = ClientIdentity(TlsIdentity.issue(ca, ALICE, PrincipalKind.USER, now_s=NOW_NS / 1e9))
    import ssl

    def der(key: object, kind: PrincipalKind) -> bytes:
        pem = TlsIdentity.issue(ca, key, kind, now_s=NOW_NS / 1e9).certificate_pem  # type: ignore[arg-type]
        return ssl.PEM_cert_to_DER_cert(pem.decode())

    me.check_server(der(SERVICE, PrincipalKind.SERVICE), "tcp://x:1")
    for cert, why in ((der(BOB, PrincipalKind.USER), "not_a_service"), (b"", "missing")):
        with pytest.raises(UnauthenticatedError) as info:
            me.check_server(cert, "tcp://x:1")
        assert info.value.fields["reason"] == why
    picky = ClientIdentity(me.identity, expected_server="coord-9")
    with pytest.raises(UnauthenticatedError) as info:
        picky.check_server(der(SERVICE, PrincipalKind.SERVICE), "tcp://x:1")
    assert info.value.fields["reason"] == "unexpected_peer"


def test_identity_files(tmp_path: Path) -> None:
    files = IdentityFiles.beside(tmp_path / "alice.key", tmp_path / "ca.pem")
    assert (files.cert.name, files.capabilities.name, files.name) == ("alice.crt", "alice.caps", "alice")
    with pytest.raises(NotFoundError, match="no private key") as info:
        files.load_tls()
    assert "feitian key create" in str(info.value.hint)
    chains = [root(ALICE).to_bytes(), root(BOB).to_bytes()]
    write_capabilities(files.capabilities, chains)
    assert stat.S_IMODE(os.stat(files.capabilities).st_mode) == 0o600
    assert read_capabilities(files.capabilities) == chains
    assert read_capabilities(tmp_path / "none.caps") == []
    (tmp_path / "bad.caps").write_text("# comment\n!!!\n")
    with pytest.raises(ConfigError, match="line 2"):
        read_capabilities(tmp_path / "bad.caps")


def test_authority_store_is_durable(tmp_path: Path) -> None:
    from feitian.security import RevocationList
    from feitian.security.authority.store import AuthorityStore

    store = AuthorityStore(tmp_path / "a")
    alice = store.add_principal("alice", ALICE.public_key, PrincipalKind.USER)
    assert store.add_principal("alice", ALICE.public_key, PrincipalKind.USER) == alice  # idempotent
    with pytest.raises(AlreadyExistsError):
        store.add_principal("alice", BOB.public_key, PrincipalKind.USER)
    with pytest.raises(AlreadyExistsError):
        store.add_principal("alice2", ALICE.public_key, PrincipalKind.USER)
    store.policy.grant(alice.id, "alice", ["echo:/text"], ["read"])
    store.save_policy()
    store.set_revocations(RevocationList().revoke_holder(BOB.principal_id))
    again = AuthorityStore(tmp_path / "a")
    assert again.principal("alice") == again.principal(alice.id) == alice
    assert [e.resource for e in again.policy.entries(alice.id)] == ["echo:/text"]
    assert again.revocations.is_holder_revoked(BOB.principal_id, NOW_NS) and again.revocations.version == 1
    with pytest.raises(NotFoundError) as info:
        again.principal("carol")
    assert "feitian user add" in str(info.value.hint)


def _feitian_imports(package: str) -> set[str]:
    found = set()
    for path in (SRC / package).rglob("*.py"):
        if package == "security" and "authority" in path.relative_to(SRC / package).parts:
            continue  # the authority service sits a layer above the rest of Zhongkui (tests/contract/test_imports.py)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("feitian."):
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("feitian."))
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("security", ("feitian.rpc", "feitian.deploy", "feitian.cli", "feitian.security.authority")),
        ("rpc", ("feitian.security", "feitian.security.authority", "feitian.deploy", "feitian.cli")),
        ("security/authority", ("feitian.deploy", "feitian.cli")),
    ],
)
def test_layers(package: str, forbidden: tuple[str, ...]) -> None:
    bad = {m for m in _feitian_imports(package) if any(m == f or m.startswith(f + ".") for f in forbidden)}
    assert not bad, f"feitian.{package} imports {sorted(bad)}"
