"""Presenting chunk tokens once per connection.

A Zhongkui token is accepted once per receiver (replay cache), and a presented token's grant stays on that
connection until it expires. So a caller presents each token once, remembers it per (chunk server, chunk,
version), and presents again only a *different* token: a fresh one from the master after the server refused
the old (expired, or lost with a reconnect: the refusal says ``not_granted``/``missing``/``expired``).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from feitian.errors import AccessReason
from feitian.rpc import Client

__all__ = ["TokenPresenter", "is_token_refusal"]

MAX_REMEMBERED = 4096
_REFUSALS = frozenset(
    {
        AccessReason.NOT_GRANTED,
        AccessReason.MISSING,
        AccessReason.EXPIRED,
        AccessReason.ISSUED_BEFORE_START,
        AccessReason.REPLAYED,
        AccessReason.WRONG_HOLDER,
    }
)


def is_token_refusal(exc: BaseException) -> bool:
    """Whether a chunk server refused for lack of a valid grant (get a fresh token and try again)."""
    from feitian.errors import FeitianError, PermissionDeniedError, UnauthenticatedError

    if not isinstance(exc, PermissionDeniedError | UnauthenticatedError):
        return False
    assert isinstance(exc, FeitianError)
    return exc.fields.get("reason") in _REFUSALS


class TokenPresenter:
    def __init__(self, client: Client) -> None:
        self.client = client
        self._presented: OrderedDict[tuple[str, int, int], bytes] = OrderedDict()
        self._pending: dict[tuple[str, int, int, bytes], asyncio.Future[None]] = {}

    async def ensure(self, address: str, chunk_id: int, version: int, token: bytes, timeout: float = 10.0) -> None:
        """Present ``token`` on the connection to ``address`` unless it was presented already."""
        if not token:
            return
        key = (address, chunk_id, version)
        if self._presented.get(key) == token:
            return
        pending = self._pending.get((*key, token))
        if pending is not None:
            await asyncio.shield(pending)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[(*key, token)] = future
        try:
            await self.client.present_token(address, token, timeout=timeout)
            self._presented[key] = token
            self._presented.move_to_end(key)
            while len(self._presented) > MAX_REMEMBERED:
                self._presented.popitem(last=False)
            future.set_result(None)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it
            raise
        finally:
            del self._pending[(*key, token)]

    def forget(self, address: str, chunk_id: int, version: int) -> None:
        self._presented.pop((address, chunk_id, version), None)
