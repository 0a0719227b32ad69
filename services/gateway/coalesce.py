"""Identical reads that arrive together share one store round trip, and none reads the past.

A client polling a campaign's status at hundreds of requests a second asks the store the same
two questions (its key, its transaction) hundreds of times a second, while the campaign's own
writes need the store most. ``Coalescer.get(key)`` runs at most one read of ``key`` at a time
in this process: a caller that arrives while one is in flight does not join it (it started
before the caller arrived, and may miss a write the caller has just seen acknowledged); it
waits for the *next* read, which starts as soon as the running one ends and answers every
caller that arrived meanwhile. So every answer was read after its request arrived, as an
uncoalesced read would be, and a store answering slowly gets fewer reads, not more: at most
two per key in flight or waiting, however many requests wait on them.

Nothing is cached: a read's answer is handed out only to the callers waiting on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["Coalescer"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Coalescer(Generic[K, V]):
    def __init__(self, read: Callable[[K], Awaitable[V]]) -> None:
        self._read = read
        self._running: dict[K, asyncio.Task[V]] = {}
        self._next: dict[K, asyncio.Task[V]] = {}

    async def get(self, key: K) -> V:
        read = self._next.get(key)
        if read is None:
            running = self._running.get(key)
            read = asyncio.ensure_future(self._read_after(key, running))
            # Registered now, before the task first runs: a caller in the same tick joins it.
            (self._running if running is None else self._next)[key] = read
        # One caller giving up (a client gone) must not cancel the others' read.
        return await asyncio.shield(read)

    async def _read_after(self, key: K, running: asyncio.Task[V] | None) -> V:
        me = asyncio.current_task()
        try:
            if running is not None:
                await asyncio.wait([running])  # its outcome is its own callers'
                del self._next[key]
                self._running[key] = me  # type: ignore[assignment]
            return await self._read(key)
        finally:
            # Cancelled while waiting, or done: later callers start afresh.
            for slot in (self._next, self._running):
                if slot.get(key) is me:
                    del slot[key]
