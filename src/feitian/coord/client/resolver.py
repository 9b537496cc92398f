"""``nuwa://<cluster>/<service>`` addresses resolved through Nuwa (KUAFU-2, NUWA-7, NUWA-8).

:class:`NuwaResolver` implements :class:`feitian.rpc.Resolver`: ``resolve`` answers from a :class:`NameCache`
(the addresses registered under ``/services/<service>/``), and ``watch`` calls back when the cache item turns
Old, so Kuafu's ``ServiceRoute`` resolves again only after a change (or a failed server)::

    nuwa = CoordClient(rpc_for_nuwa, replica_addresses)
    rpc = Client(config, resolver=NuwaResolver(nuwa, cluster="local"))
    await rpc.call("nuwa://local/echo", Echo(b"hi"))
"""

from __future__ import annotations

from collections.abc import Callable

from feitian.coord.client.client import CoordClient
from feitian.coord.client.recipes.naming import NameCache
from feitian.rpc import NuwaAddress

__all__ = ["NuwaResolver"]


class NuwaResolver:
    def __init__(self, client: CoordClient, cluster: str, *, cache: NameCache | None = None) -> None:
        self.client = client
        self.cluster = cluster
        self.cache = cache or NameCache(client)

    @property
    def resolve_calls(self) -> int:
        """Lookups sent to the replicas (a New cache item costs none)."""
        return self.cache.lookups

    async def resolve(self, address: NuwaAddress) -> list[str]:
        if address.cluster != self.cluster:
            return []
        return await self.cache.resolve(address.service)

    def watch(self, address: NuwaAddress, on_change: Callable[[], None]) -> Callable[[], None]:
        if address.cluster != self.cluster:
            return lambda: None
        return self.cache.on_change(address.service, on_change)

    async def close(self) -> None:
        await self.cache.close()
