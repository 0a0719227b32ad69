"""Moves SES events to the sink: delays outcomes, batches within a short linger, retries.

A batch waits one ``linger`` for company; while each linger brings at least ``_FLOWING``
more events (as a full SQS receive tells the tracker's poller that more are waiting), it
keeps gathering, up to the sink's ``max_batch`` events or ``gather_seconds``. A trickle
goes after one linger; a campaign's flow goes in batches of a few hundred events.

Events wait in memory until the sink takes them; a sink that is down is retried with capped
exponential backoff and jitter, so a brief outage loses nothing (a simulator crash does).
Delayed events wait in one heap behind one timer, which moves everything due at once and
fires at most every ``tick`` seconds: at a thousand sends a second that is a few wake-ups
instead of a timer per send, and an outcome at most ``tick`` late.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import uuid
from collections import deque

import structlog

from stack.sesim.events import Event
from stack.sesim.sinks import EventSink

__all__ = ["Dispatcher"]

_log = structlog.get_logger("sesim.dispatcher")
_CLOCK_SLACK = 0.001
# Events a linger must bring for the batch to keep gathering: an SQS receive's worth.
_FLOWING = 10


class Dispatcher:
    def __init__(
        self,
        sink: EventSink,
        *,
        linger: float = 0.05,
        tick: float = 0.005,
        backoff_first: float = 0.1,
        backoff_max: float = 5.0,
    ) -> None:
        self._sink = sink
        self._linger = linger
        self._tick = tick
        self._backoff_first = backoff_first
        self._backoff_max = backoff_max
        self._ready: deque[Event] = deque()
        self._wakeup = asyncio.Event()
        self._pending = 0  # emitted, not yet delivered (delayed ones included)
        self._idle = asyncio.Event()
        self._idle.set()
        # (due on the loop's clock, order of emission, events): the earliest first.
        self._delayed: list[tuple[float, int, list[Event]]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self.delivered = 0

    @property
    def pending(self) -> int:
        return self._pending

    def emit(self, events: list[Event], delay: float = 0.0) -> None:
        """Queue ``events`` (in order) for delivery after ``delay`` seconds."""
        if not events:
            return
        self._pending += len(events)
        self._idle.clear()
        if delay <= 0:
            self._enqueue(events)
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        heapq.heappush(self._delayed, (due, next(self._order), events))
        if self._timer is None or due < self._timer_at:
            self._arm(loop, due)

    def _arm(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = due
        self._timer = loop.call_at(due, self._release_due)

    def _release_due(self) -> None:
        """The timer: everything due goes to the ready queue; re-armed for what is left."""
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        released = False
        # uvloop's timers count whole milliseconds: one may fire a little before its time.
        while self._delayed and self._delayed[0][0] <= now + _CLOCK_SLACK:
            self._ready.extend(heapq.heappop(self._delayed)[2])
            released = True
        if released:
            self._wakeup.set()
        if self._delayed:
            self._arm(loop, max(self._delayed[0][0], now + self._tick))

    def _enqueue(self, events: list[Event]) -> None:
        self._ready.extend(events)
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            await self._wakeup.wait()
            await self._gather()
            batch = [
                self._ready.popleft() for _ in range(min(len(self._ready), self._sink.max_batch))
            ]
            if not self._ready:
                self._wakeup.clear()
            if batch:
                await self._deliver(batch)

    async def _gather(self) -> None:
        """Linger while the batch is not full and events keep coming (see the module's doc)."""
        loop = asyncio.get_running_loop()
        until = loop.time() + self._sink.gather_seconds
        while len(self._ready) < self._sink.max_batch:
            before = len(self._ready)
            await asyncio.sleep(self._linger)
            if len(self._ready) - before < _FLOWING or loop.time() >= until:
                return

    async def _deliver(self, events: list[Event]) -> None:
        # The batch id stays the same across retries of the same events (the NATS sink's
        # Nats-Msg-Id: a publish whose ack was lost is dropped by the server when repeated).
        batch_id = uuid.uuid4().hex
        remaining = events
        attempt = 0
        while remaining:
            try:
                left = await self._sink.deliver(batch_id, remaining)
            except Exception as e:  # any sink failure: keep the events and try again
                _log.warning("sink delivery failed", error=repr(e), events=len(remaining))
                left = remaining
            if len(left) < len(remaining):
                self._settle(len(remaining) - len(left))
                batch_id = uuid.uuid4().hex  # what is left is a different batch
            remaining = left
            if remaining:
                delay = min(self._backoff_max, self._backoff_first * 2**attempt)
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
                attempt += 1

    def _settle(self, count: int) -> None:
        self.delivered += count
        self._pending -= count
        if self._pending == 0:
            self._idle.set()

    async def drain(self, within: float) -> bool:
        """Wait until every emitted event is delivered; False if ``within`` seconds pass first."""
        try:
            await asyncio.wait_for(self._idle.wait(), within)
        except TimeoutError:
            return False
        return True

    def cancel_delayed(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._delayed.clear()
