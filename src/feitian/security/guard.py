"""The server-side security API every component uses (ZK-2, ZK-3, ZK-4).

One :class:`Guard` per server process; one :class:`ConnectionSecurity` per accepted connection::

    guard = Guard(authority_key=..., audiences={me.id, "coord"}, revocations=view,
                  replay_cache=ReplayCache(started_at_ns=clock.wall_ns()), clock=clock)
    conn = guard.open_connection(writer.get_extra_info("ssl_object").getpeercert(binary_form=True))
    guard.present_capability(conn, chain_bytes)        # a "present credentials" RPC, any number of times
    guard.check(conn, GET_RULE, request, method="coord.Get")   # before every handler

Every refusal raises UnauthenticatedError / PermissionDeniedError (or UnavailableError when the revocation
list is stale), is logged once at WARNING on the injected logger with the principal, method and reason, and
is counted in :attr:`Guard.refusals` by reason.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TypeVar

from feitian.base.clock import Clock
from feitian.errors import FeitianError
from feitian.security.ca import principal_of_certificate
from feitian.security.core.authorize import Authorizer, MethodRule
from feitian.security.core.capability import DEFAULT_CLOCK_SKEW_NS, CapabilityChain, Grant, verify_chain
from feitian.security.core.identity import Principal
from feitian.security.core.reasons import Reason, refusal
from feitian.security.core.revocation import RevocationList, RevocationView
from feitian.security.core.token import ReplayCache, Token, verify_token

__all__ = ["ConnectionSecurity", "Guard"]

RequestT = TypeVar("RequestT")
_T = TypeVar("_T")


@dataclass(slots=True)
class ConnectionSecurity:
    """The security state of one connection: who it is, and what it has presented."""

    principal: Principal
    authorizer: Authorizer


class Guard:
    """Authenticates connections, verifies presented credentials, and checks every call."""

    def __init__(
        self,
        *,
        authority_key: bytes,
        audiences: Collection[str],
        revocations: RevocationView,
        replay_cache: ReplayCache,
        clock: Clock,
        logger: logging.Logger | None = None,
        skew_ns: int = DEFAULT_CLOCK_SKEW_NS,
    ) -> None:
        self.authority_key = authority_key
        self.audiences = frozenset(audiences)
        self.revocations = revocations
        self.replay_cache = replay_cache
        self.clock = clock
        self.logger = logger or logging.getLogger("feitian.security")
        self.skew_ns = skew_ns
        self.refusals: Counter[str] = Counter()

    def _current(self) -> RevocationList:
        return self.revocations.current(self.clock.monotonic_ns())

    def _guarded(self, what: str, who: str, action: Callable[[], _T]) -> _T:
        try:
            return action()
        except FeitianError as exc:
            self._refused(what, who, exc)
            raise

    def _refused(self, what: str, who: str, exc: FeitianError) -> None:
        reason = str(exc.fields.get("reason", exc.code))
        self.refusals[reason] += 1
        self.logger.warning("refused %s for %s: %s [reason=%s]", what, who, exc.message, reason)

    def open_connection(self, peer: Principal | bytes) -> ConnectionSecurity:
        """Start tracking a connection whose TLS handshake completed (``peer``: principal or DER cert)."""
        principal: Principal | None = peer if isinstance(peer, Principal) else None

        def run() -> ConnectionSecurity:
            nonlocal principal
            if not peer:
                raise refusal(Reason.MISSING, "connection: the TLS peer presented no certificate")
            if principal is None:
                assert isinstance(peer, bytes)
                principal = principal_of_certificate(peer)
            now_ns = self.clock.wall_ns()
            if self._current().is_holder_revoked(principal.id, now_ns):
                raise refusal(Reason.REVOKED_HOLDER, f"connection from {principal.describe()}: revoked")
            return ConnectionSecurity(principal, Authorizer(principal))

        try:
            return run()
        except FeitianError as exc:
            self._refused("connection", principal.describe() if principal is not None else "TLS peer", exc)
            raise

    def present_capability(self, conn: ConnectionSecurity, chain: CapabilityChain | bytes) -> Grant:
        """Verify a capability chain presented on ``conn`` and attach it (it must be held by the peer)."""

        def run() -> Grant:
            decoded = CapabilityChain.from_bytes(chain) if isinstance(chain, bytes) else chain
            now_ns = self.clock.wall_ns()
            grant = verify_chain(
                decoded,
                authority_key=self.authority_key,
                now_ns=now_ns,
                revocations=self._current(),
                skew_ns=self.skew_ns,
            )
            conn.authorizer.add_grant(grant, now_ns=now_ns)
            return grant

        return self._guarded("capability", conn.principal.describe(), run)

    def present_token(self, conn: ConnectionSecurity, token: Token | bytes) -> Grant:
        """Verify a token presented on ``conn`` (once only, for one of :attr:`audiences`) and attach it."""

        def run() -> Grant:
            now_ns = self.clock.wall_ns()
            grant = verify_token(
                token,
                audiences=self.audiences,
                presenter_key=conn.principal.public_key,
                authority_key=self.authority_key,
                now_ns=now_ns,
                revocations=self._current(),
                replay_cache=self.replay_cache,
                skew_ns=self.skew_ns,
            )
            conn.authorizer.add_grant(grant, now_ns=now_ns)
            return grant

        return self._guarded("token", conn.principal.describe(), run)

    def check(
        self, conn: ConnectionSecurity, rule: MethodRule[RequestT] | None, request: RequestT, method: str = "call"
    ) -> None:
        """Refuse the call before its handler runs unless ``conn`` holds what ``rule`` requires.

        ``rule`` None (or a rule without a right) needs an authenticated, unrevoked peer only. This is the hot
        path: an allowed call costs two clock reads and, with a rule, one cached-decision lookup.
        """
        clock = self.clock
        try:
            now_ns = clock.wall_ns()
            revocations = self.revocations.current(clock.monotonic_ns())
            if rule is None or (rule.right is None and rule.each is None):  # authentication only (not revoked)
                if revocations.is_holder_revoked(conn.principal.id, now_ns):
                    raise refusal(Reason.REVOKED_HOLDER, f"{method} by {conn.principal.describe()}: revoked")
                return
            conn.authorizer.check_call(rule, request, now_ns=now_ns, revocations=revocations)
        except FeitianError as exc:
            self._refused(method, conn.principal.describe(), exc)
            raise

    def refuse_connection(self, peer: str, reason: str, message: str) -> None:
        """Log and count a connection refused before it was authenticated (a failed TLS handshake)."""
        self.refusals[reason] += 1
        self.logger.warning("refused connection from %s: %s [reason=%s]", peer, message, reason)
