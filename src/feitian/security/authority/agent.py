"""A node's link to the authority: a fresh revocation list for its guard, and renewed capabilities for its calls.

Every guarded node runs one :class:`SecurityAgent`:

* **Revocations.** It long-polls ``authority.Revocations`` (``wait_s`` = ``refresh_s``, 10 s by default) and
  installs every answer in the guard's :class:`~feitian.security.RevocationView`. A revocation therefore reaches
  the node as soon as the authority publishes it; and since an answer comes at least every ``refresh_s``, the
  view stays inside its staleness bound (30 s) while the authority is reachable. When it is not, the view goes
  stale and the node's guard refuses every call with ``revocations_stale`` (fail closed) until it is back.
* **Capabilities.** Long-lived services get capabilities minted in advance (``feitian cluster up`` writes them
  next to the node's identity). The agent renews them from the authority at half their remaining lifetime,
  writes them back to the file, and presents the fresh chains on the node client's open connections.

Both loops are :class:`~feitian.runtime.periodic.PeriodicTask` runs on the injected clock, which the agent
also reads and waits on for its first fetch, so a test drives it with a manual clock.
"""

from __future__ import annotations

import logging
from pathlib import Path

from feitian.base.clock import Clock
from feitian.errors import FeitianError, UnavailableError
from feitian.rpc import Client
from feitian.runtime.periodic import PeriodicTask
from feitian.security import RevocationList, RevocationView
from feitian.security.authority.messages import GetRevocations, Issue
from feitian.security.identity_files import write_capabilities
from feitian.security.kuafu import CapabilitySet

__all__ = ["SecurityAgent"]

log = logging.getLogger(__name__)

_RETRY_S = 1.0
_MIN_RENEW_S = 1.0
_MAX_RENEW_WAIT_S = 600.0
_RENEW_RETRY_S = 10.0


class SecurityAgent:
    """See the module docstring. ``authority`` is the authority's address ("" on the authority node itself)."""

    def __init__(
        self,
        *,
        client: Client,
        credentials: CapabilitySet,
        view: RevocationView,
        authority: str,
        clock: Clock,
        refresh_s: float = 10.0,
        capabilities_path: str | None = None,
    ) -> None:
        self.client = client
        self.credentials = credentials
        self.view = view
        self.authority = authority
        self.clock = clock
        self.refresh_s = refresh_s
        self.capabilities_path = capabilities_path
        self.fetches = 0
        self.fetch_failures = 0
        self.renewals = 0
        self._known = -1  # the version of the list installed last
        self._renew_at_ns: int | None = None  # wall time of the next renewal, once it is within _MAX_RENEW_WAIT_S
        # A long poll after another; a failed one is retried after _RETRY_S.
        self.poller = PeriodicTask("security-revocations", self._poll_once, 0.0, clock=clock, logger=log)
        # Wakes when the next renewal is due (or after _MAX_RENEW_WAIT_S, to notice a changed wall clock); a
        # failed renewal is retried after _RENEW_RETRY_S.
        self.renewer = PeriodicTask(
            "capability renewal from the authority",
            self._renew_once,
            _MAX_RENEW_WAIT_S,
            clock=clock,
            error_delay_s=_RENEW_RETRY_S,
            logger=log,
        )

    async def start(self, timeout_s: float = 30.0) -> None:
        """Fetch the revocation list once (retrying up to ``timeout_s``), then keep it fresh in the background."""
        if not self.authority:
            return
        clock = self.clock
        give_up_ns = clock.monotonic_ns() + int(timeout_s * 1e9)
        while True:
            try:
                self._known = await self._fetch(self._known, 0.0)
                break
            except FeitianError as exc:
                if clock.monotonic_ns() >= give_up_ns:
                    raise UnavailableError(
                        f"no revocation list from the authority at {self.authority} within {timeout_s:.0f}s: {exc}",
                        hint="is the authority running? (feitian cluster status)",
                    ) from exc
                await clock.sleep(min(_RETRY_S, max(0.0, (give_up_ns - clock.monotonic_ns()) / 1e9)))
        self.poller.start()
        if self.credentials.earliest_expiry() is not None:
            self.renewer.start()

    async def stop(self) -> None:
        await self.poller.stop()
        await self.renewer.stop()

    async def _fetch(self, known: int, wait_s: float) -> int:
        reply = await self.client.call(
            self.authority, GetRevocations(known, wait_s), timeout=wait_s + self.refresh_s + 5.0
        )
        self.view.update(RevocationList.from_bytes(reply.data), self.clock.monotonic_ns())
        self.fetches += 1
        return reply.version

    async def _poll_once(self) -> float | None:
        """One long poll; a failure is logged with the list's age and retried after _RETRY_S."""
        try:
            self._known = await self._fetch(self._known, self.refresh_s)
        except FeitianError as exc:
            self.fetch_failures += 1
            age = self.view.age_ns(self.clock.monotonic_ns())
            log.warning(
                "cannot refresh revocations from %s (list %.1fs old): %s",
                self.authority,
                (age or 0) / 1e9,
                exc,
            )
            return _RETRY_S
        return None  # the next poll at once

    async def _renew_once(self) -> float | None:
        """Renew when the time planned has come, then plan the next renewal at half the remaining lifetime of the
        earliest-expiring capability; returns how long to wait. A failure (raised) keeps the plan, so the
        renewal is retried after _RENEW_RETRY_S."""
        if self._renew_at_ns is not None and self.clock.wall_ns() >= self._renew_at_ns:
            await self.renew()
            self._renew_at_ns = None
        expiry = self.credentials.earliest_expiry()
        if expiry is None:
            await self.renewer.stop()  # nothing expires any more
            return None
        now_ns = self.clock.wall_ns()
        remaining_s = (expiry - now_ns) / 1e9
        wait_s = min(_MAX_RENEW_WAIT_S, max(_MIN_RENEW_S, remaining_s / 2))
        if remaining_s / 2 <= _MAX_RENEW_WAIT_S:
            self._renew_at_ns = now_ns + int(wait_s * 1e9)
        # else not yet: wait in steps, so a changed clock is noticed
        return wait_s

    async def renew(self) -> int:
        """Ask the authority for everything the policy allows this node; present it; returns how many."""
        reply = await self.client.call(self.authority, Issue(), timeout=10.0)
        self.credentials.replace(reply.chains)
        if self.capabilities_path:
            write_capabilities(Path(self.capabilities_path), list(reply.chains))
        await self.client.refresh_credentials()
        self.renewals += 1
        log.info("renewed %d capabilities", len(reply.chains))
        return len(reply.chains)
