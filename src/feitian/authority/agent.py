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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from feitian.authority.messages import GetRevocations, Issue
from feitian.base.clock import Clock
from feitian.errors import FeitianError, UnavailableError
from feitian.rpc import Client
from feitian.security import RevocationList, RevocationView
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
        self._tasks: list[asyncio.Task[None]] = []
        self.fetches = 0
        self.renewals = 0

    async def start(self, timeout_s: float = 30.0) -> None:
        """Fetch the revocation list once (retrying up to ``timeout_s``), then keep it fresh in the background."""
        if not self.authority:
            return
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout_s
        known = -1
        while True:
            try:
                known = await self._fetch(known, 0.0)
                break
            except FeitianError as exc:
                if loop.time() > give_up:
                    raise UnavailableError(
                        f"no revocation list from the authority at {self.authority} within {timeout_s:.0f}s: {exc}",
                        hint="is the authority running? (feitian cluster status)",
                    ) from exc
                await asyncio.sleep(min(_RETRY_S, max(0.0, give_up - loop.time())))
        self._tasks.append(loop.create_task(self._poll(known), name="security-revocations"))
        if self.credentials.earliest_expiry() is not None:
            self._tasks.append(loop.create_task(self._renew(), name="security-renewal"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _fetch(self, known: int, wait_s: float) -> int:
        reply = await self.client.call(
            self.authority, GetRevocations(known, wait_s), timeout=wait_s + self.refresh_s + 5.0
        )
        self.view.update(RevocationList.from_bytes(reply.data), self.clock.monotonic_ns())
        self.fetches += 1
        return reply.version

    async def _poll(self, known: int) -> None:
        while True:
            try:
                known = await self._fetch(known, self.refresh_s)
            except FeitianError as exc:
                age = self.view.age_ns(self.clock.monotonic_ns())
                log.warning(
                    "cannot refresh revocations from %s (list %.1fs old): %s",
                    self.authority,
                    (age or 0) / 1e9,
                    exc,
                )
                await asyncio.sleep(_RETRY_S)

    async def _renew(self) -> None:
        while True:
            expiry = self.credentials.earliest_expiry()
            if expiry is None:
                return
            remaining_s = (expiry - self.clock.wall_ns()) / 1e9
            await asyncio.sleep(min(_MAX_RENEW_WAIT_S, max(_MIN_RENEW_S, remaining_s / 2)))
            if remaining_s / 2 > _MAX_RENEW_WAIT_S:
                continue  # not yet: wait in steps, so a changed clock is noticed
            try:
                await self.renew()
            except FeitianError as exc:
                log.warning("cannot renew capabilities from %s: %s", self.authority, exc)
                await asyncio.sleep(_RENEW_RETRY_S)

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
