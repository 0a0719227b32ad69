"""Answers from a read at most a moment old, refreshed behind the callers' backs.

A campaign's status is polled, and the store is busiest while the campaign runs: a poll that
waits for its own read waits behind the campaign's writes (half a second at the 99th
percentile, measured by bench/e2e.py). ``RecentReads.get(key)`` answers from the last read of
``key`` if it began less than ``max_age`` ago; once it is older than ``refresh_after``, one
refresh starts in the background (services/gateway/coalesce.py shares it). Only a key read
longer than ``max_age`` ago, or never, makes the caller wait.

So an answer may be up to ``max_age`` behind the store, and never more. The gateway's own
writes of a key ``forget`` it, so the replica that made a write answers with it at once.
Keys not found are not kept: a record being created must not be answered "missing" after it
exists.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Final, Generic, TypeVar

import structlog
from cachetools import TTLCache

from services.gateway.coalesce import Coalescer

__all__ = ["RecentReads"]

log = structlog.get_logger("gateway.recent_reads")

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Far more records than one gateway is asked about at once; the oldest go first when full.
_MAX_KEPT: Final = 10_000


class RecentReads(Generic[K, V]):
    def __init__(
        self,
        read: Callable[[K], Awaitable[V | None]],
        *,
        refresh_after: float,
        max_age: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reads: Coalescer[K, V | None] = Coalescer(read)
        self._refresh_after = refresh_after
        self._max_age = max_age
        self._clock = clock
        # key -> (when its read began, what it read)
        self._kept: TTLCache[K, tuple[float, V]] = TTLCache(maxsize=_MAX_KEPT, ttl=max_age)
        # key -> when this process last changed it: a read that began before is not kept.
        self._forgotten: TTLCache[K, float] = TTLCache(maxsize=_MAX_KEPT, ttl=max_age)
        self._refreshing: dict[K, asyncio.Task[V | None]] = {}

    async def get(self, key: K) -> V | None:
        kept = self._kept.get(key)
        if kept is not None:
            began, value = kept
            age = self._clock() - began
            if age < self._max_age:
                if age >= self._refresh_after and key not in self._refreshing:
                    task = asyncio.ensure_future(self._read(key))
                    self._refreshing[key] = task
                    task.add_done_callback(lambda done: self._refreshed(key, done))
                return value
        return await self._read(key)

    def forget(self, key: K) -> None:
        """This process changed ``key``: the next ``get`` reads it."""
        self._kept.pop(key, None)
        self._forgotten[key] = self._clock()

    def forget_where(self, test: Callable[[V], bool]) -> None:
        """``forget`` every key whose kept value passes ``test``."""
        for key, (_, value) in list(self._kept.items()):
            if test(value):
                self.forget(key)

    async def _read(self, key: K) -> V | None:
        began = self._clock()
        value = await self._reads.get(key)
        kept = self._kept.get(key)
        if value is None:
            self._kept.pop(key, None)
        elif began > self._forgotten.get(key, began - 1) and (kept is None or kept[0] < began):
            self._kept[key] = (began, value)
        return value

    def _refreshed(self, key: K, task: asyncio.Task[V | None]) -> None:
        del self._refreshing[key]
        if not task.cancelled() and task.exception() is not None:
            # The callers had their answer; the next get after max_age reads and fails.
            log.warning("background refresh failed", error=repr(task.exception()))
