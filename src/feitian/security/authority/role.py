"""The ``authority`` node role: the cluster's authority service (feitian.security.authority), guarded like any node.

``[role]`` keys: ``authority_key`` (the authority's private key file, mode 0600) and ``ca_cert`` (the cluster CA
certificate). Its durable state lives in the node's data directory (feitian.security.authority.store); only one
authority process may use a data directory at a time.

``node`` is the deploy layer's NodeContext (its server, data directory, security, stats); this module only reads
those attributes, so the service never imports the deploy layer (like Pangu's and Nuwa's roles).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import msgspec

from feitian.errors import ConfigError
from feitian.rpc import Metric
from feitian.runtime.files import DirLock
from feitian.security import ClusterAuthority, load_private_key
from feitian.security.authority.service import AuthorityService
from feitian.security.authority.store import AuthorityStore

__all__ = ["AuthorityOptions", "AuthorityRole"]


class AuthorityOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    authority_key: str
    ca_cert: str


AUTHORITY_METRICS = (
    Metric("authority_principals", "gauge", "principals (services and users) the authority knows"),
    Metric("authority_revocations", "gauge", "entries in the revocation list"),
    Metric("authority_revocation_version", "gauge", "the revocation list's version (it grows with each change)"),
    Metric("authority_waiting_polls", "gauge", "nodes waiting in a long poll for the next revocation change"),
)


def authority_figures(service: AuthorityService) -> Callable[[], dict[str, float]]:
    store = service.store
    return lambda: {
        "authority_principals": len(store.principals),
        "authority_revocations": len(store.revocations),
        "authority_revocation_version": store.revocations.version,
        "authority_waiting_polls": service.waiting,
    }


class AuthorityRole:
    options_type: ClassVar[type[Any]] = AuthorityOptions

    def __init__(self) -> None:
        self._lock: DirLock | None = None
        self._fresh: asyncio.Task[None] | None = None
        self.service: AuthorityService | None = None

    async def start(self, node: Any, options: Any) -> dict[str, str]:
        assert isinstance(options, AuthorityOptions)
        security = node.security
        if security is None:
            raise ConfigError("role authority needs a [security] section: the authority never runs unauthenticated")
        if not node.data_dir:
            raise ConfigError("role authority needs [node] data_dir: its policy is stored there")
        key = load_private_key(options.authority_key)
        try:
            ca = ClusterAuthority.from_pem(key, Path(options.ca_cert).read_bytes())
        except OSError as exc:
            raise ConfigError("role authority", problems=[f"{options.ca_cert}: {exc.strerror}"]) from None
        self._lock = DirLock(node.data_dir)
        store = AuthorityStore(node.data_dir)
        self.service = AuthorityService(store, ca, security.view, security.clock)
        node.server.add_service(self.service)
        node.stats.add_source(AUTHORITY_METRICS, authority_figures(self.service))
        refresh_s = security.section.revocation_refresh_s
        self._fresh = asyncio.get_running_loop().create_task(self.service.keep_fresh(refresh_s))
        return {"principal": security.principal.id}

    async def stop(self) -> None:
        if self._fresh is not None:
            self._fresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._fresh
        if self._lock is not None:
            self._lock.release()
