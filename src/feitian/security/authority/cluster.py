"""The security of a local cluster: its authority, CA and identities, and clients that use them.

``feitian cluster up`` creates ``DIR/security/`` (mode 0700)::

    authority.key              the authority's private key (0600): signs certificates and capabilities
    ca.pem                     the cluster CA certificate (the authority key, self-signed)
    identities/admin.{key,pub,crt,caps}    the local user's identity (a user); the policy grants it everything
    identities/<node>.{key,pub,crt,caps}   one service identity per node, with capabilities minted in advance

Keys are created once and reused by later ``cluster up`` runs in the same directory; certificates and
capabilities are issued afresh each time. The authority's state (principals, policy, revocations) is seeded in
its data directory before it starts (:class:`feitian.security.authority.store.AuthorityStore`).

Clients pick an identity with ``--identity NAME|PATH`` or ``$FEITIAN_IDENTITY`` (default ``admin``): a name is
looked up in ``identities/``, a path names a ``.key`` file with its ``.crt`` and ``.caps`` beside it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from feitian.errors import FeitianError, NotFoundError
from feitian.rpc import Client, ClientConfig, Resolver
from feitian.runtime.files import ensure_dir
from feitian.security import (
    CapabilityChain,
    ClusterAuthority,
    KeyPair,
    PrincipalKind,
    Right,
    create_identity_files,
    load_private_key,
    save_private_key,
    sign_capability,
)
from feitian.security.authority.messages import Issue
from feitian.security.authority.store import AuthorityStore
from feitian.security.identity_files import IdentityFiles, read_capabilities
from feitian.security.kuafu import CapabilitySet, ClientIdentity, chain_expiry

__all__ = ["ADMIN", "ROLE_GRANTS", "ClusterSecurity", "resolve_identity"]

ADMIN = "admin"
CAPABILITY_TTL_S = 3600.0
RENEW_BEFORE_S = 60.0  # a client renews capabilities that expire sooner than this
# What each role's services may do by default (component resources they call on each other).
ROLE_GRANTS: dict[str, list[tuple[str, list[Right]]]] = {
    "echo": [
        ("echo:/text", [Right.READ]),  # echo.relay calls echo.text on another echo node
        ("coord:/services/", [Right.READ, Right.CREATE, Right.WRITE, Right.DELETE]),  # registers itself in Nuwa
    ],
    "coord": [("raft:/", [Right.WRITE])],  # Nuwa replicas send each other raft.Step
    "kv": [("raft:/", [Right.WRITE])],  # replicas send each other raft.Step
    # Pangu masters: raft.Step to each other; chunk tokens are minted from dfs-chunk:*; chunk.Copy/Stats.
    "dfs-master": [
        ("raft:/", [Right.WRITE]),
        ("dfs-chunk:*", [Right.READ, Right.WRITE]),
        ("dfs-chunkserver:/", [Right.READ, Right.WRITE]),
    ],
    "chunkserver": [("dfs-cluster:/servers", [Right.WRITE])],  # heartbeats and chunk reports to the master
    # FuxiMaster: its election and hard state in Nuwa (under /elections/fuxi-master/ and /fuxi/).
    "fuxi-master": [
        ("coord:/fuxi/", [Right.READ, Right.CREATE, Right.WRITE, Right.DELETE]),
        ("coord:/elections/fuxi-master/", [Right.READ, Right.CREATE, Right.WRITE, Right.DELETE]),
        ("coord:/feitian/packages/", [Right.READ]),  # resolves an application's package when submitted
        # registers each application's principal and retires it when the application ends (ZK-3)
        ("authority:/principals/apps/", [Right.CREATE, Right.DELETE]),
    ],
    # Tubo: heartbeats and its processes' calls to FuxiMaster; workers started on other Tubos.
    "tubo": [
        ("fuxi:/tubo", [Right.WRITE]),
        ("coord:/feitian/packages/", [Right.READ]),  # package records
        ("dfs:/feitian/packages/", [Right.READ]),  # package blobs
    ],
}


class ClusterSecurity:
    """The ``security/`` directory of a local cluster."""

    def __init__(self, cluster_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(cluster_dir) / "security"
        self.identities = self.dir / "identities"
        self.authority_key = self.dir / "authority.key"
        self.ca = self.dir / "ca.pem"

    def exists(self) -> bool:
        return self.ca.exists()

    def identity(self, name: str) -> IdentityFiles:
        return IdentityFiles.beside(self.identities / f"{name}.key", self.ca)

    # -- creation (cluster up) ---------------------------------------------------------------------------------

    def create(
        self, cluster_name: str, services: Sequence[tuple[str, str]], authority_data_dir: str | os.PathLike[str]
    ) -> None:
        """Create (or refresh) the authority, the admin and one identity per ``(node name, role)``; seed the
        authority's state; mint each principal's capabilities from the policy."""
        ensure_dir(self.identities)
        os.chmod(self.dir, 0o700)
        os.chmod(self.identities, 0o700)
        now_s = time.time()
        authority = self._authority(cluster_name, now_s)
        store = AuthorityStore(authority_data_dir)
        holders = [(ADMIN, PrincipalKind.USER)] + [(name, PrincipalKind.SERVICE) for name, _ in services]
        keys = {}
        for name, kind in holders:
            key = self._key(name)
            keys[name] = key
            files = self.identity(name)
            pem = authority.issue_certificate_pem(key.public(), kind, now_s=now_s)
            files.cert.write_bytes(pem)
            store.add_principal(name, key.public_key, kind)
        admin_id = keys[ADMIN].principal_id
        if not store.policy.entries(admin_id):
            store.policy.grant(admin_id, ADMIN, ["*"], [Right.ADMIN])
        for name, role in services:
            for resource, rights in ROLE_GRANTS.get(role, []):
                store.policy.grant(keys[name].principal_id, name, [resource], rights)
        store.save_policy()
        for name, _ in holders:
            self.identity(name).write_capabilities(self._mint(store, authority, keys[name], now_s))

    def _authority(self, cluster_name: str, now_s: float) -> ClusterAuthority:
        if self.authority_key.exists() and self.ca.exists():
            return ClusterAuthority.from_pem(load_private_key(self.authority_key), self.ca.read_bytes())
        key = KeyPair.generate("authority")
        save_private_key(self.authority_key, key)
        authority = ClusterAuthority.create(key, cluster_name=cluster_name, now_s=now_s)
        self.ca.write_bytes(authority.certificate_pem())
        return authority

    def _key(self, name: str) -> KeyPair:
        files = self.identity(name)
        if files.key.exists():
            return load_private_key(files.key)
        key, _, _ = create_identity_files(self.identities, name)
        return key

    @staticmethod
    def _mint(store: AuthorityStore, authority: ClusterAuthority, key: KeyPair, now_s: float) -> list[bytes]:
        chains = []
        for entry in store.policy.entries(key.principal_id):
            cap = store.policy.issue(
                holder_key=key.public_key,
                holder_name=key.name,
                resources=[entry.resource],
                rights=entry.rights,
                now_ns=int(now_s * 1e9),
                authority_key=authority.public_key,
                ttl_ns=int(CAPABILITY_TTL_S * 1e9),
                max_depth=entry.max_depth,
            )
            chains.append(CapabilityChain(links=(sign_capability(cap, authority.key),)).to_bytes())
        return chains

    # -- clients -----------------------------------------------------------------------------------------------

    async def client(
        self,
        config: ClientConfig,
        *,
        identity: str | None = None,
        capability_files: Iterable[str] = (),
        authority: str = "",
        auto_capabilities: bool = True,
        resolver: Resolver | None = None,
    ) -> Client:
        """A client acting as ``identity``, presenting its capabilities (see the module docstring).

        With explicit ``capability_files`` exactly those are presented. Otherwise the identity's ``.caps``
        file is used, and renewed from the ``authority`` first when it holds nothing valid for another minute.
        """
        files = resolve_identity(self, identity)
        tls = ClientIdentity(files.load_tls())
        explicit = list(capability_files)
        if explicit:  # exactly these, as given (the server says what is wrong with them)
            chains = [chain for path in explicit for chain in _read_required(path)]
            return Client(config, tls=tls, credentials=CapabilitySet(chains, drop_expired=False), resolver=resolver)
        else:
            chains = files.read_capabilities()
            if auto_capabilities and authority and _needs_renewal(chains):
                chains = await _request_all(tls, authority)
                files.write_capabilities(chains)
        return Client(config, tls=tls, credentials=CapabilitySet(chains), resolver=resolver)


def resolve_identity(security: ClusterSecurity, identity: str | None) -> IdentityFiles:
    """``--identity`` / ``$FEITIAN_IDENTITY`` / ``admin``: a name in ``identities/`` or a path to a key file."""
    value = identity or os.environ.get("FEITIAN_IDENTITY") or ADMIN
    if os.sep in value or value.endswith(".key"):
        return IdentityFiles.beside(os.path.abspath(value), security.ca)
    files = security.identity(value)
    if not files.key.exists():
        raise NotFoundError(
            f"no identity {value!r} in {security.identities}",
            hint="give a key file (--identity PATH/NAME.key) or create one with `feitian key create NAME`",
        )
    return files


def _read_required(path: str) -> list[bytes]:
    if not Path(path).exists():
        raise NotFoundError(f"capability file {path}: no such file")
    return read_capabilities(path)


def _needs_renewal(chains: list[bytes]) -> bool:
    horizon = time.time_ns() + int(RENEW_BEFORE_S * 1e9)
    try:
        return not any(chain_expiry(chain) > horizon for chain in chains)
    except FeitianError:
        return True  # an unreadable file: ask for fresh ones


async def _request_all(tls: ClientIdentity, authority: str) -> list[bytes]:
    async with Client(ClientConfig(name="feitian-cap", connect_timeout_s=2.0), tls=tls) as client:
        reply = await client.call(authority, Issue(ttl_s=CAPABILITY_TTL_S), timeout=10.0)
    return list(reply.chains)
