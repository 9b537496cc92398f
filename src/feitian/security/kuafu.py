"""Zhongkui on Kuafu: the objects a server and a client hand to ``feitian.rpc`` to secure every call (ZK-4).

``feitian.rpc`` defines small protocols (``feitian.rpc.security``); this module implements them without
importing ``feitian.rpc``::

    server = Server(config, security=ServerGuard(guard, identity))     # mutual TLS + per-call checks
    client = Client(config, tls=ClientIdentity(identity), credentials=CapabilitySet([chain_bytes]))

* :class:`ServerGuard` gives the server its TLS context (client certificates required), turns each peer
  certificate into a :class:`~feitian.security.guard.ConnectionSecurity`, verifies presented capabilities and
  tokens, and checks every call through the :class:`~feitian.security.guard.Guard` (cached per connection).
* :class:`ClientIdentity` gives the client its TLS context and accepts only cluster *services* as servers.
* :class:`CapabilitySet` is the list of chains a client presents on every new connection; renewing a
  capability is replacing it here and calling ``client.refresh_credentials()``.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable

from feitian.base.clock import Clock, MonotonicClock
from feitian.errors import FeitianError
from feitian.security.ca import principal_of_certificate
from feitian.security.core.capability import CapabilityChain, Grant
from feitian.security.core.identity import Principal, PrincipalKind
from feitian.security.core.reasons import Reason, refusal
from feitian.security.guard import ConnectionSecurity, Guard
from feitian.security.tls import TlsIdentity, client_context, server_context

__all__ = [
    "CapabilitySet",
    "ClientIdentity",
    "SamePrincipalClient",
    "SamePrincipalServer",
    "ServerGuard",
    "chain_expiry",
]


class ServerGuard:
    """Implements ``feitian.rpc.security.ServerSecurity`` with a :class:`Guard` and the server's identity."""

    def __init__(self, guard: Guard, identity: TlsIdentity) -> None:
        self.guard = guard
        self.identity = identity
        self._context = server_context(identity)
        self.check = guard.check  # the per-call hot path: no extra frame

    @property
    def ssl_context(self) -> ssl.SSLContext:
        return self._context

    def open_connection(self, peer_certificate: bytes) -> ConnectionSecurity:
        return self.guard.open_connection(peer_certificate)

    def present_capability(self, conn: ConnectionSecurity, chain: bytes) -> Grant:
        return self.guard.present_capability(conn, chain)

    def present_token(self, conn: ConnectionSecurity, token: bytes) -> Grant:
        return self.guard.present_token(conn, token)

    def refused(self, peer: str, reason: str, message: str) -> None:
        self.guard.refuse_connection(peer, reason, message)


class ClientIdentity:
    """Implements ``feitian.rpc.security.ClientTls``: present ``identity``; accept only cluster services.

    ``expected_server`` (a service name or principal id) narrows it to one service.
    """

    def __init__(self, identity: TlsIdentity, *, expected_server: str | None = None) -> None:
        self.identity = identity
        self.expected_server = expected_server
        self._context = client_context(identity)

    @property
    def ssl_context(self) -> ssl.SSLContext:
        return self._context

    @property
    def principal(self) -> Principal:
        return self.identity.principal

    def check_server(self, peer_certificate: bytes, endpoint: str) -> None:
        if not peer_certificate:
            raise refusal(Reason.MISSING, f"connect {endpoint}: the server presented no certificate")
        server = principal_of_certificate(peer_certificate)
        if server.kind is not PrincipalKind.SERVICE:
            raise refusal(Reason.NOT_A_SERVICE, f"connect {endpoint}: {server.describe()} is not a cluster service")
        expected = self.expected_server
        if expected is not None and expected not in (server.name, server.id):
            raise refusal(
                Reason.UNEXPECTED_PEER, f"connect {endpoint}: {server.describe()} is not the expected {expected!r}"
            )


def chain_expiry(chain: bytes) -> int:
    """When an encoded chain stops being valid (the earliest expiry of its links), without verifying it."""
    links = CapabilityChain.from_bytes(chain).links
    return min(link.open().expires_ns for link in links)


def _expiry_or_zero(chain: bytes) -> int:
    try:
        return chain_expiry(chain)
    except FeitianError:
        return 0  # unreadable: presented only when drop_expired is off (for the server to say why)


class CapabilitySet:
    """Implements ``feitian.rpc.security.Credentials``: encoded chains, each presented until it expires.

    With ``drop_expired=False`` every chain is presented as given, expired or not, so the server says exactly
    what is wrong with it (``feitian rpc call --capability FILE``).
    """

    def __init__(self, chains: Iterable[bytes] = (), *, clock: Clock | None = None, drop_expired: bool = True) -> None:
        self._clock = clock or MonotonicClock()
        self._drop_expired = drop_expired
        self._chains: list[tuple[bytes, int]] = []
        self.replace(chains)

    def replace(self, chains: Iterable[bytes]) -> None:
        """Use exactly ``chains`` from now on (the renewal step; then ``client.refresh_credentials()``)."""
        self._chains = [(chain, _expiry_or_zero(chain)) for chain in chains]

    def add(self, chain: bytes) -> None:
        self._chains.append((chain, _expiry_or_zero(chain)))

    def capabilities(self) -> list[bytes]:
        if not self._drop_expired:
            return [chain for chain, _ in self._chains]
        now_ns = self._clock.wall_ns()
        return [chain for chain, expires_ns in self._chains if now_ns < expires_ns]

    def earliest_expiry(self) -> int | None:
        """The first expiry among the chains (None when there are none): when to renew by."""
        return min((expires for _, expires in self._chains), default=None)

    def __len__(self) -> int:
        return len(self._chains)


class _PeerConnection:
    __slots__ = ("principal",)

    def __init__(self, principal: Principal) -> None:
        self.principal = principal


def _same_principal(own: Principal, peer_certificate: bytes, what: str) -> Principal:
    if not peer_certificate:
        raise refusal(Reason.MISSING, f"{what}: the peer presented no certificate")
    peer = principal_of_certificate(peer_certificate)
    if peer.id != own.id:
        raise refusal(Reason.UNEXPECTED_PEER, f"{what}: {peer.describe()} is not {own.describe()}")
    return peer


class SamePrincipalServer:
    """Mutual TLS between the processes of one principal — an application's master and its workers (ZK-4).

    Both ends hold the same certificate (the application's identity, issued by the cluster authority); the
    server accepts a peer only if its certificate names that same principal, so another application, a user or
    a service cannot call in. The connection is the authorization: every call on it is allowed, no capability
    is presented or needed. Implements ``feitian.rpc.security.ServerSecurity``; its client side is
    :class:`SamePrincipalClient`.
    """

    def __init__(self, identity: TlsIdentity) -> None:
        self.principal = identity.principal
        self._context = server_context(identity)
        self.refusals = 0

    @property
    def ssl_context(self) -> ssl.SSLContext:
        return self._context

    def open_connection(self, peer_certificate: bytes) -> _PeerConnection:
        return _PeerConnection(_same_principal(self.principal, peer_certificate, "connection"))

    def check(self, conn: object, rule: object, request: object, method: str) -> None:
        return None  # the connection is its own principal's: everything is allowed

    def present_capability(self, conn: object, chain: bytes) -> Grant:
        raise refusal(Reason.NOT_GRANTED, "capabilities are not taken here: a peer of the same principal needs none")

    def present_token(self, conn: object, token: bytes) -> Grant:
        raise refusal(Reason.NOT_GRANTED, "tokens are not taken here: a peer of the same principal needs none")

    def refused(self, peer: str, reason: str, message: str) -> None:
        self.refusals += 1


class SamePrincipalClient:
    """Implements ``feitian.rpc.security.ClientTls``: present ``identity``; accept only a server holding the same
    principal (:class:`SamePrincipalServer`). Host names are not checked: peers are found by the addresses they
    register, and authenticated by the certificate."""

    def __init__(self, identity: TlsIdentity) -> None:
        self.principal = identity.principal
        self._context = client_context(identity, check_hostname=False)

    @property
    def ssl_context(self) -> ssl.SSLContext:
        return self._context

    def check_server(self, peer_certificate: bytes, endpoint: str) -> None:
        _same_principal(self.principal, peer_certificate, f"connect {endpoint}")
