"""The hooks through which Kuafu authenticates connections and authorizes calls (ZK-4).

Kuafu knows nothing about identities, certificates or capabilities: it defines these small protocols and
:mod:`feitian.security` implements them (``feitian.security.kuafu``), so ``feitian.rpc`` stays usable, and
importable, without security — tests and benchmarks run plain servers.

With a :class:`ServerSecurity`, a server:

* speaks only mutual TLS on every listener (the handshake runs inside Kuafu's own stream, see
  :mod:`feitian.rpc.tls`), refuses plaintext Kuafu clients with ``UnauthenticatedError(reason="tls_required")``
  and logs every handshake it refuses (:meth:`ServerSecurity.refused`);
* hands the peer's certificate to :meth:`ServerSecurity.open_connection` once the handshake completes, and keeps
  what it returns as the connection's security state (a refusal is sent to the client, which raises it);
* answers ``kuafu.PresentCapability`` and ``kuafu.PresentToken`` (processed in order with the calls around
  them, never queued), which attach credentials to the connection;
* before queueing any call, asks :meth:`ServerSecurity.check` whether the connection may make it, passing the
  rule the handler declared (``@handler(Get, requires=...)``; ``None``: authentication only). A refused call
  never reaches a lane.

With a :class:`ClientTls` a client connects with mutual TLS and checks the server's certificate
(:meth:`ClientTls.check_server`); with :class:`Credentials` it presents its capability chains on every new
connection, right after the handshake, before the connection carries calls.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import Any, Protocol

__all__ = ["ClientTls", "ConnectionAuth", "Credentials", "PresentedGrant", "ServerSecurity"]


class ConnectionAuth(Protocol):
    """The security state of one server connection (opaque to Kuafu apart from its principal)."""

    @property
    def principal(self) -> Any:
        """The authenticated peer; it has ``name``, ``id`` and ``describe()``."""
        ...


class PresentedGrant(Protocol):
    """What a verified credential grants (for the reply to a presentation)."""

    @property
    def holder_id(self) -> str: ...

    @property
    def expires_ns(self) -> int: ...

    def describe(self) -> str: ...


class ServerSecurity(Protocol):
    @property
    def ssl_context(self) -> ssl.SSLContext:
        """A TLS server context that requires a client certificate."""
        ...

    def open_connection(self, peer_certificate: bytes) -> ConnectionAuth:
        """Authenticate a peer whose handshake completed (DER certificate); raise a FeitianError to refuse."""
        ...

    def check(self, conn: Any, rule: Any, request: Any, method: str) -> None:
        """Raise UnauthenticatedError / PermissionDeniedError (or UnavailableError) to refuse a call."""
        ...

    def present_capability(self, conn: Any, chain: bytes) -> PresentedGrant: ...

    def present_token(self, conn: Any, token: bytes) -> PresentedGrant: ...

    def refused(self, peer: str, reason: str, message: str) -> None:
        """Record a connection refused before it was authenticated (failed handshake, plaintext client)."""
        ...


class ClientTls(Protocol):
    @property
    def ssl_context(self) -> ssl.SSLContext:
        """A TLS client context presenting this client's certificate."""
        ...

    def check_server(self, peer_certificate: bytes, endpoint: str) -> None:
        """After the handshake: raise a FeitianError unless the server is acceptable (a cluster service)."""
        ...


class Credentials(Protocol):
    def capabilities(self) -> Sequence[bytes]:
        """Encoded capability chains to present on every new connection (expired ones left out)."""
        ...
