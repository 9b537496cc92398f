"""Resolving ``nuwa://cluster/Service`` addresses (KUAFU-2).

The coordination service implements :class:`Resolver` (list the servers registered under the service's
directory, and notify on changes). :class:`ServiceRoute` keeps one service's endpoints in a
:class:`~feitian.rpc.core.balance.Balancer`: it asks the resolver only when its cache item is Old (first use, a
change notification, or a failed server), so with no changes a client resolves a service once.
:class:`MemoryResolver` is an in-process resolver for tests and static deployments.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Protocol

from feitian.base.clock import Clock
from feitian.errors import UnavailableError
from feitian.rpc.core.address import NuwaAddress
from feitian.rpc.core.balance import Balancer


class Resolver(Protocol):
    async def resolve(self, address: NuwaAddress) -> list[str]:
        """The endpoint addresses (``tcp://...``) of the live servers of a service."""
        ...

    def watch(self, address: NuwaAddress, on_change: Callable[[], None]) -> Callable[[], None]:
        """Call ``on_change`` whenever the service's server set may have changed; returns an unsubscribe."""
        ...


class MemoryResolver:
    """A resolver backed by a dict; ``resolve_calls`` counts lookups (tests use it)."""

    def __init__(self) -> None:
        self._services: dict[tuple[str, str], list[str]] = {}
        self._watchers: dict[tuple[str, str], list[Callable[[], None]]] = {}
        self.resolve_calls = 0

    def set_endpoints(self, cluster: str, service: str, endpoints: Sequence[str]) -> None:
        key = (cluster, service)
        self._services[key] = list(endpoints)
        for callback in list(self._watchers.get(key, ())):
            callback()

    async def resolve(self, address: NuwaAddress) -> list[str]:
        self.resolve_calls += 1
        return list(self._services.get((address.cluster, address.service), []))

    def watch(self, address: NuwaAddress, on_change: Callable[[], None]) -> Callable[[], None]:
        key = (address.cluster, address.service)
        self._watchers.setdefault(key, []).append(on_change)

        def unsubscribe() -> None:
            callbacks = self._watchers.get(key, [])
            if on_change in callbacks:
                callbacks.remove(on_change)

        return unsubscribe


class ServiceRoute:
    """Endpoint selection for one ``nuwa://`` address, driven by a resolver."""

    def __init__(self, address: NuwaAddress, resolver: Resolver, clock: Clock) -> None:
        self.address = address
        self.clock = clock  # when an endpoint failed, and whether it may be tried again
        self._resolver = resolver
        self.balancer = Balancer()
        self._resolving: asyncio.Future[None] | None = None
        self._unwatch = resolver.watch(address, self.balancer.mark_stale)

    async def pick(self) -> str:
        """An endpoint to call; resolves first if the cached set is Old. Raises UnavailableError if the service
        has no live server."""
        if self.balancer.needs_resolve:
            await self._refresh()
        endpoint = self.balancer.pick(self.clock.monotonic_ns())
        if endpoint is None:
            raise UnavailableError(
                f"{self.address}: no live server is registered", hint="is the service running and registered in Nuwa?"
            )
        return endpoint

    async def _refresh(self) -> None:
        if self._resolving is not None:  # one lookup at a time; others wait for its answer
            await asyncio.shield(self._resolving)
            return
        self._resolving = asyncio.get_running_loop().create_future()
        try:
            endpoints = await self._resolver.resolve(self.address)
            self.balancer.update(endpoints)
        finally:
            done, self._resolving = self._resolving, None
            done.set_result(None)

    def report_failure(self, endpoint: str) -> None:
        self.balancer.report_failure(endpoint, self.clock.monotonic_ns())

    def report_success(self, endpoint: str) -> None:
        self.balancer.report_success(endpoint)

    def close(self) -> None:
        self._unwatch()
