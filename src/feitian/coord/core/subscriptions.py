"""Which subscribers an event concerns: an index from selectors to subscriber keys (NUWA-5, NUWA-10).

The service (or a proxy sharing one subscription among many clients) keeps one index; for each event it asks
``matching(event)``, which costs one lookup per ancestor directory of the event's path, not one per subscriber.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

from feitian.coord.core.events import Event, Selector, SelectorKind
from feitian.coord.core.paths import ROOT, ancestors
from feitian.errors import OverloadedError

__all__ = ["SubscriptionIndex"]

K = TypeVar("K", bound=Hashable)


class SubscriptionIndex(Generic[K]):
    def __init__(self, max_subscriptions: int = 1_000_000) -> None:
        self.max_subscriptions = max_subscriptions
        self._by_kind: dict[SelectorKind, dict[str, set[K]]] = {kind: {} for kind in SelectorKind}
        self._by_key: dict[K, set[Selector]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, key: K, selector: Selector) -> None:
        """Subscribe ``key`` (a no-op if already subscribed); OverloadedError beyond ``max_subscriptions``."""
        selectors = self._by_key.setdefault(key, set())
        if selector in selectors:
            return
        if self._count >= self.max_subscriptions:
            if not selectors:
                del self._by_key[key]
            raise OverloadedError(f"subscribe {selector.kind} {selector.path}: {self._count} subscriptions (the limit)")
        selectors.add(selector)
        self._by_kind[selector.kind].setdefault(selector.path, set()).add(key)
        self._count += 1

    def remove(self, key: K, selector: Selector) -> None:
        selectors = self._by_key.get(key)
        if selectors is None or selector not in selectors:
            return
        selectors.discard(selector)
        if not selectors:
            del self._by_key[key]
        keys = self._by_kind[selector.kind][selector.path]
        keys.discard(key)
        if not keys:
            del self._by_kind[selector.kind][selector.path]
        self._count -= 1

    def remove_all(self, key: K) -> None:
        for selector in list(self._by_key.get(key, ())):
            self.remove(key, selector)

    def selectors(self, key: K) -> frozenset[Selector]:
        return frozenset(self._by_key.get(key, ()))

    def matching(self, event: Event) -> set[K]:
        path = event.path
        out: set[K] = set(self._by_kind[SelectorKind.NODE].get(path, ()))
        children = self._by_kind[SelectorKind.CHILDREN]
        out.update(children.get(path, ()))
        if path != ROOT:
            out.update(children.get(event.parent, ()))
        subtree = self._by_kind[SelectorKind.SUBTREE]
        if subtree:
            for directory in [*ancestors(path), path]:
                out.update(subtree.get(directory, ()))
        return out
