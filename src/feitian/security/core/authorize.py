"""Server-side authorization: what each RPC method requires, and the per-connection decision (ZK-2, ZK-4).

A method declares its requirement once, with :func:`requires`::

    GET_RULE = requires(Right.READ, lambda req: f"coord:{req.path}")

and the server framework, before running the handler, asks the connection's :class:`Authorizer` whether the
authenticated principal holds a verified capability (or token) covering that right on that resource. The
authorizer caches decisions per ``(right, resource)``; a cached decision is dropped when the grant behind it
expires, when a new grant is added, and when the revocation list changes (a new list *instance*: lists are
immutable), at which point every grant is re-checked against the new list.

Services are checked exactly like users: a service principal needs capabilities too (ZK-4).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from feitian.errors import InvalidArgumentError
from feitian.security.core.capability import Grant
from feitian.security.core.identity import Principal
from feitian.security.core.reasons import Reason, refusal
from feitian.security.core.resources import Resource, parse_resource
from feitian.security.core.revocation import RevocationList
from feitian.security.core.rights import Right

__all__ = [
    "DEFAULT_MAX_DECISIONS",
    "DEFAULT_MAX_GRANTS",
    "Authorizer",
    "MethodRule",
    "requires",
    "requires_authentication",
    "requires_each",
]

DEFAULT_MAX_DECISIONS = 1024
DEFAULT_MAX_GRANTS = 64
_MAX_DROPPED = 16
_NEVER = 2**63

RequestT = TypeVar("RequestT")


@dataclass(frozen=True, slots=True)
class MethodRule(Generic[RequestT]):
    """What a method needs: ``right`` on the resource ``resource_of(request)`` names.

    ``right`` None means "any authenticated principal" (for example: ask the authority for a capability).
    ``each`` (from :func:`requires_each`): a request that carries several requests needs what each of their
    rules requires; ``each(request)`` yields (rule, inner request) pairs and every one must pass.
    """

    right: Right | None
    resource_of: Callable[[RequestT], str] | None
    each: Callable[[RequestT], Iterable[tuple[MethodRule[Any], Any]]] | None = None

    def resource_for(self, request: RequestT) -> str | None:
        return None if self.resource_of is None else self.resource_of(request)


def requires(right: Right | str, resource: str | Callable[[RequestT], str]) -> MethodRule[RequestT]:
    """Declare that a method needs ``right`` on ``resource`` (a fixed string or a function of the request).

    A fixed resource is checked here, at declaration time.
    """
    right_value = Right(right)
    if isinstance(resource, str):
        parse_resource(resource)
        fixed = resource
        return MethodRule(right=right_value, resource_of=lambda _request: fixed)
    return MethodRule(right=right_value, resource_of=resource)


def requires_each(parts: Callable[[RequestT], Iterable[tuple[MethodRule[Any], Any]]]) -> MethodRule[RequestT]:
    """Declare that a method carrying several requests needs, for each (rule, inner request) ``parts(request)``
    yields, what that rule requires: a batch is allowed exactly when each of its requests would be alone."""
    return MethodRule(right=None, resource_of=None, each=parts)


def requires_authentication() -> MethodRule[Any]:
    """Declare that a method needs only an authenticated peer (mutual TLS), no capability."""
    return MethodRule(right=None, resource_of=None)


@dataclass(frozen=True, slots=True)
class _Decision:
    allowed: bool
    valid_until_ns: int


class Authorizer:
    """The authorization state of one connection: its principal, the grants it presented, cached decisions.

    Owned by the task serving the connection (not thread-safe, no locking needed). ``now_ns`` is wall time.
    """

    __slots__ = (
        "_decisions",
        "_dropped",
        "_grants",
        "_revocations",
        "hits",
        "max_decisions",
        "max_grants",
        "misses",
        "principal",
    )

    def __init__(
        self,
        principal: Principal,
        *,
        max_decisions: int = DEFAULT_MAX_DECISIONS,
        max_grants: int = DEFAULT_MAX_GRANTS,
    ) -> None:
        if max_decisions <= 0 or max_grants <= 0:
            raise InvalidArgumentError("authorizer: max_decisions and max_grants must be > 0")
        self.principal = principal
        self.max_decisions = max_decisions
        self.max_grants = max_grants
        self.hits = 0
        self.misses = 0
        self._grants: list[Grant] = []
        self._dropped: deque[tuple[Grant, Reason]] = deque(maxlen=_MAX_DROPPED)
        self._decisions: dict[tuple[Right, str], _Decision] = {}
        self._revocations: RevocationList | None = None

    @property
    def grants(self) -> tuple[Grant, ...]:
        return tuple(self._grants)

    def add_grant(self, grant: Grant, *, now_ns: int) -> None:
        """Attach a verified grant. It must be held by this connection's principal (else ``wrong_holder``).

        At :attr:`max_grants`, expired grants are dropped first, then the one expiring soonest.
        """
        if grant.holder_key != self.principal.public_key:
            raise refusal(
                Reason.WRONG_HOLDER,
                f"capability held by {grant.holder_id} presented by {self.principal.describe()}: a "
                "capability is only usable on a connection authenticated as its holder",
                principal_id=self.principal.id,
                holder_id=grant.holder_id,
            )
        if now_ns >= grant.expires_ns:
            raise refusal(Reason.EXPIRED, f"grant {grant.describe()}: expired (now {now_ns})")
        self._drop_expired(now_ns)
        if len(self._grants) >= self.max_grants:
            self._grants.remove(min(self._grants, key=lambda g: g.expires_ns))
        self._grants.append(grant)
        self._decisions.clear()
        self._revocations = None  # re-check every grant against the next list seen, whatever it was verified with

    def check(self, right: Right, resource: str, *, now_ns: int, revocations: RevocationList) -> None:
        """Allow, or raise PermissionDeniedError / UnauthenticatedError naming principal, right, resource."""
        if revocations is not self._revocations:
            self._apply_revocations(revocations, now_ns)
        key = (right, resource)
        decision = self._decisions.get(key)
        if decision is not None and now_ns < decision.valid_until_ns:
            self.hits += 1
            if decision.allowed:
                return
            raise self._denial(right, parse_resource(resource))
        self.misses += 1
        wanted = parse_resource(resource)
        self._drop_expired(now_ns)
        decision = self._decide(right, wanted)
        if len(self._decisions) >= self.max_decisions:
            self._decisions.clear()
        self._decisions[key] = decision
        if not decision.allowed:
            raise self._denial(right, wanted)

    def check_call(
        self, rule: MethodRule[RequestT], request: RequestT, *, now_ns: int, revocations: RevocationList
    ) -> None:
        """Check ``rule`` for ``request`` (a rule without a right only needs the authenticated connection).

        The hot path: a cached allow under the same revocation list costs one dict lookup, inlined here.
        """
        right, resource_of = rule.right, rule.resource_of
        if right is None:
            if rule.each is not None:
                for inner_rule, inner in rule.each(request):
                    self.check_call(inner_rule, inner, now_ns=now_ns, revocations=revocations)
            return
        if resource_of is None:
            raise InvalidArgumentError("method rule: a right without a resource")
        resource = resource_of(request)
        if revocations is self._revocations:
            decision = self._decisions.get((right, resource))
            if decision is not None and decision.allowed and now_ns < decision.valid_until_ns:
                self.hits += 1
                return
        self.check(right, resource, now_ns=now_ns, revocations=revocations)

    def _decide(self, right: Right, wanted: Resource) -> _Decision:
        # Validity starts were checked (with the clock-skew allowance) when each grant was verified.
        allowing = [g for g in self._grants if g.allows(right, wanted)]
        if allowing:
            return _Decision(True, max(g.expires_ns for g in allowing))
        return _Decision(False, _NEVER)  # until a grant is added or the revocation list changes

    def _denial(self, right: Right, wanted: Resource) -> Exception:
        fields = {"principal_id": self.principal.id, "right": right.value, "resource": str(wanted)}
        what = f"{right} {wanted} by {self.principal.describe()}"
        for grant, reason in reversed(self._dropped):
            if grant.allows(right, wanted):
                return refusal(reason, f"{what}: the capability that allowed it is {reason}", **fields)
        if not self._grants:
            return refusal(
                Reason.MISSING,
                f"{what}: no capability presented on this connection",
                hint="present a capability (or token) covering this resource",
                **fields,
            )
        return refusal(Reason.NOT_GRANTED, f"{what}: no presented capability grants it", **fields)

    def _drop_expired(self, now_ns: int) -> None:
        expired = [g for g in self._grants if now_ns >= g.expires_ns]
        for grant in expired:
            self._grants.remove(grant)
            self._dropped.append((grant, Reason.EXPIRED))

    def _apply_revocations(self, revocations: RevocationList, now_ns: int) -> None:
        kept = []
        for grant in self._grants:
            if revocations.first_revoked_id(grant.capability_ids, now_ns) is not None:
                self._dropped.append((grant, Reason.REVOKED_ID))
            elif revocations.first_revoked_holder(grant.principal_ids, now_ns) is not None:
                self._dropped.append((grant, Reason.REVOKED_HOLDER))
            else:
                kept.append(grant)
        self._grants = kept
        self._decisions.clear()
        self._revocations = revocations
