"""The account's send rate as one ceiling for every sender replica together.

All replicas share one clock position in the NATS key-value bucket ``sender``: key ``next``
holds the earliest time (Unix seconds) not yet handed out. A replica reserves a block of
send times by moving it forward with a compare-and-set (a generic cell rate algorithm):

    start = max(next, now);  next = start + block / rate;  its sends go at start + i / rate

so sends are spaced 1/rate apart across all replicas, whoever reserves them, and none
ever goes above the ceiling. A replica that dies wastes the rest of its block, which only
errs below the rate. Throttling answers slow one replica down (its spacing widens, AIMD)
until SES stops complaining; the shared spacing never gets tighter than 1/rate.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

import structlog
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from shared.metrics import SES_SEND_RATE

__all__ = ["Pacer"]

log = structlog.get_logger("sender.pacer")

_KEY = "next"
# How far under the ceiling the pace is held: a send can leave up to ``_LATE`` after its
# moment, and a second of sends must still fit in a second, on our clock and on SES's.
_MARGIN = 0.99
_LATE = 0.05


class Pacer:
    """Hands out send times; ``await turn()`` returns when this replica may make one call."""

    def __init__(
        self,
        kv: KeyValue,
        rate: float,
        *,
        block_seconds: float = 0.25,
        horizon_seconds: float = 0.5,
    ) -> None:
        self.kv = kv
        self.rate = rate
        # How much of the rate a block takes: each block is one write to the bucket (a
        # JetStream message), so not too small; small enough that replicas interleave and
        # a replica that dies wastes little.
        self.block = max(1, round(rate * block_seconds))
        # Never reserve further ahead than this: it would only hold times others could use.
        self.horizon = horizon_seconds
        # 1.0 runs at the ceiling; throttling lowers it, success brings it back.
        self.pace = 1.0
        self._show_rate()
        self._times: deque[float] = deque()
        self._lock = asyncio.Lock()

    async def turn(self) -> float:
        """Wait for this replica's next send time; returns it (Unix seconds).

        A time already past by more than ``_LATE`` is dropped rather than used: sending at
        every missed moment at once would bunch sends above the rate.
        """
        while True:
            async with self._lock:
                if not self._times:
                    await self._reserve()
                at = self._times.popleft()
            delay = at - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
                return at
            if delay > -_LATE:
                return at

    def throttled(self) -> None:
        """SES said we are too fast: widen this replica's spacing."""
        self.pace = max(0.2, self.pace * 0.7)
        self._show_rate()

    def succeeded(self) -> None:
        if self.pace < 1.0:
            self.pace = min(1.0, self.pace + 0.01)
            self._show_rate()

    def _show_rate(self) -> None:
        SES_SEND_RATE.set(self.rate * _MARGIN * self.pace)

    async def _reserve(self) -> None:
        interval = 1.0 / (self.rate * _MARGIN * self.pace)
        while True:
            now = time.time()
            try:
                entry = await self.kv.get(_KEY)
                start = max(float(entry.value or b"0"), now)
                revision: int | None = entry.revision
            except KeyNotFoundError:
                start, revision = now, None
            if start - now > self.horizon:
                # Other replicas hold the next moments; come back when they are near.
                await asyncio.sleep(start - now - self.horizon)
                continue
            end = start + self.block * interval
            try:
                if revision is None:
                    await self.kv.create(_KEY, repr(end).encode())
                else:
                    await self.kv.update(_KEY, repr(end).encode(), last=revision)
            except KeyWrongLastSequenceError:
                continue  # another replica moved it first; read again
            self._times.extend(start + i * interval for i in range(self.block))
            return
