"""Test helpers for Kuafu: run a server on an ephemeral 127.0.0.1 port for the length of a block."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from feitian.rpc import Server, ServerConfig


@asynccontextmanager
async def serving(server: Server | None = None, *addresses: str) -> AsyncIterator[tuple[Server, str]]:
    """Start ``server`` (default: a bare one) on ``addresses`` (default: an ephemeral 127.0.0.1 port); yield it
    and its first address; stop it after."""
    server = server or Server(ServerConfig(name="test"))
    bound = await server.start(list(addresses) or ["tcp://127.0.0.1:0"])
    try:
        yield server, bound[0]
    finally:
        await server.stop(grace_s=0.5)
