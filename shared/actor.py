"""The actor runner (STYLE rule 7): one durable pull consumer, one ``handle`` per event.

    decode -> handle(event) -> settle
        ok                      ack
        RetryableError          nak(delay=backoff), until max_deliver: then dead letter
        PermanentError          dead letter, term
        undecodable payload     dead letter, term
        anything else (a bug)   treated as retryable: it may be a passing fault, and
                                max_deliver bounds it

While ``handle`` runs, the message is kept alive with in-progress acks so long work is
not redelivered to another replica. ``stop`` makes the runner stop fetching, finish what
it holds and return: the graceful drain on SIGTERM.

An actor whose events can be joined (``merge_limit`` > 1, ``merge``) gets the messages a
fetch returns together, up to ``merge_limit``, as one event: its fixed cost per event (the
store round trips, the announcements) is paid once for all of them. Under load fetches
return more, so batches grow with the load. If the joined event fails, each message is
handled on its own, so one bad message is retried or dead-lettered alone.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from asyncio import FIRST_COMPLETED
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import ClassVar, Generic, TypeVar

import msgspec
import structlog
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext

from shared.broker import Broker
from shared.documents import DeadLetter
from shared.errors import PermanentError, RetryableError
from shared.events import decoder
from shared.records import keep_dead_letter
from shared.store import Store
from shared.topology import ConsumerSpec, Subjects

__all__ = ["Actor", "ActorRunner"]

E = TypeVar("E", bound=msgspec.Struct)

log = structlog.get_logger("actor")


class Actor(ABC, Generic[E]):
    """Domain code for one kind of event; knows nothing of acks and redeliveries."""

    spec: ConsumerSpec
    event_type: type[E]
    # How many deliveries may be handled as one event (see ``merge``).
    merge_limit: ClassVar[int] = 1

    @abstractmethod
    async def handle(self, event: E) -> None: ...

    def merge(self, events: Sequence[E]) -> E:
        """One event that handling is the same as handling each of ``events`` (in order);
        needed only with a ``merge_limit`` above 1."""
        raise NotImplementedError


class ActorRunner(Generic[E]):
    def __init__(
        self,
        actor: Actor[E],
        broker: Broker,
        store: Store,
        *,
        concurrency: int = 8,
        fetch_timeout: float = 1.0,
    ) -> None:
        self.actor = actor
        self.spec = actor.spec
        self.broker = broker
        self.store = store
        self.concurrency = concurrency
        self.fetch_timeout = fetch_timeout
        self._decoder = decoder(actor.event_type)
        self._stop = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()

    def stop(self) -> None:
        self._stop.set()

    async def run(self, *, until_idle: bool = False) -> None:
        """Fetch and handle until stopped, or with ``until_idle`` until the consumer has
        nothing left: nothing to deliver, nothing in flight, no redelivery waiting."""
        js: JetStreamContext = self.broker.js
        sub = await js.pull_subscribe_bind(durable=self.spec.durable, stream=self.spec.stream)
        stopped = asyncio.create_task(self._stop.wait())
        try:
            while not self._stop.is_set():
                free = self.concurrency - len(self._in_flight)
                if free <= 0:
                    # Every slot is busy: wait for one to free up, or for stop.
                    await asyncio.wait({stopped, *self._in_flight}, return_when=FIRST_COMPLETED)
                    continue
                limit = self.actor.merge_limit
                try:
                    msgs = await sub.fetch(batch=free * limit, timeout=self.fetch_timeout)
                except (TimeoutError, NatsTimeoutError):
                    msgs = []
                except NatsError as e:
                    # The server is restarting or unreachable: the client reconnects on its
                    # own; keep asking, without spinning.
                    log.warning("fetch failed", consumer=self.spec.durable, error=repr(e))
                    await asyncio.wait({stopped}, timeout=self.fetch_timeout)
                    continue
                for start in range(0, len(msgs), limit):
                    task = asyncio.create_task(self._process_or_leave(msgs[start : start + limit]))
                    self._in_flight.add(task)
                    task.add_done_callback(self._in_flight.discard)
                if until_idle and not msgs and not self._in_flight and await _idle(sub):
                    break
            if self._in_flight:
                await asyncio.gather(*self._in_flight, return_exceptions=True)
        except asyncio.CancelledError:
            # Cut off (a stop's grace period is over, shared/service.py): the handlings in
            # hand go too, and hand their messages back (``_process_or_leave``).
            for task in self._in_flight:
                task.cancel()
            await asyncio.gather(*self._in_flight, return_exceptions=True)
            raise
        finally:
            stopped.cancel()
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _process_or_leave(self, msgs: list[Msg]) -> None:
        try:
            if len(msgs) == 1 or not await self._process_merged(msgs):
                for msg in msgs:
                    await self._process(msg)
        except asyncio.CancelledError:
            # Cut off: handed back now, for another replica, rather than after ack_wait.
            # Shielded from the next cut.
            await asyncio.shield(_hand_back(msgs))
            raise
        except Exception:
            # Settling failed (the connection dropped): unacknowledged, the messages come
            # back after ack_wait, and handlers are idempotent.
            log.exception("could not settle", consumer=self.spec.durable, messages=len(msgs))

    async def _process_merged(self, msgs: list[Msg]) -> bool:
        """Handle ``msgs`` as one event and ack them all; False when that failed (nothing
        is settled then: each is handled on its own, with its own retries)."""
        try:
            events = [self._decoder.decode(msg.data) for msg in msgs]
        except msgspec.DecodeError:
            return False
        keepalive = [asyncio.create_task(self._keep_alive(msg)) for msg in msgs]
        try:
            await self.actor.handle(self.actor.merge(events))
        except Exception as e:
            log.warning(
                "merged events failed; one at a time",
                consumer=self.spec.durable,
                messages=len(msgs),
                error=repr(e),
            )
            return False
        finally:
            for task in keepalive:
                task.cancel()
        await asyncio.gather(*(msg.ack() for msg in msgs))
        return True

    async def _process(self, msg: Msg) -> None:
        meta = msg.metadata
        deliveries = meta.num_delivered
        bound = log.bind(
            consumer=self.spec.durable,
            subject=msg.subject,
            seq=meta.sequence.stream,
            delivery=deliveries,
        )
        try:
            event = self._decoder.decode(msg.data)
        except msgspec.DecodeError as e:
            await self._dead_letter(msg, f"undecodable payload: {e}")
            return
        keepalive = asyncio.create_task(self._keep_alive(msg))
        try:
            with structlog.contextvars.bound_contextvars(
                transaction_id=getattr(event, "transaction_id", None)
            ):
                await self.actor.handle(event)
        except PermanentError as e:
            bound.warning("permanent failure", error=repr(e))
            await self._dead_letter(msg, repr(e), getattr(event, "transaction_id", None))
        except Exception as e:  # RetryableError, or a bug that max_deliver will bound
            if deliveries >= self.spec.max_deliver:
                bound.error("retries exhausted", error=repr(e))
                await self._dead_letter(
                    msg,
                    f"after {deliveries} deliveries: {e!r}",
                    getattr(event, "transaction_id", None),
                )
            else:
                delay = self.spec.backoff[min(deliveries, len(self.spec.backoff)) - 1]
                level = "warning" if isinstance(e, RetryableError) else "exception"
                getattr(bound, level)("will retry", error=repr(e), delay=delay)
                await msg.nak(delay=delay)
        else:
            await msg.ack()
        finally:
            keepalive.cancel()

    async def _keep_alive(self, msg: Msg) -> None:
        interval = self.spec.ack_wait / 3
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(Exception):
                await msg.in_progress()

    async def _dead_letter(self, msg: Msg, error: str, transaction_id: str | None = None) -> None:
        """Copy the message to the dead letters, then drop it from the work stream.

        ``transaction_id`` is the event's, when it names one: the transaction's audit trail
        shows the letter.

        ``term`` deletes it from a work-queue stream, so the copy is made first; if the
        copy cannot be made the message is nak'ed instead and nothing is lost.
        """
        meta = msg.metadata
        letter = DeadLetter(
            id=f"{self.spec.stream}:{meta.sequence.stream}",
            service=self.spec.service,
            subject=msg.subject,
            stream_seq=meta.sequence.stream,
            deliveries=meta.num_delivered,
            payload=msg.data.decode("utf-8", errors="replace"),
            error=error,
            at=datetime.now(UTC),
            transaction_id=transaction_id,
        )
        try:
            await keep_dead_letter(self.store, letter)
            await self.broker.nc.publish(Subjects.dlq(self.spec.service), msg.data)
        except Exception:
            log.exception("cannot dead-letter; will retry", subject=msg.subject)
            await msg.nak(delay=self.spec.backoff[-1])
            return
        await msg.term()


async def _hand_back(msgs: Sequence[Msg]) -> None:
    """Nak what was not settled yet (a settled message refuses, and that is fine); if NATS
    is gone, they come back after ack_wait all the same."""
    for msg in msgs:
        with contextlib.suppress(Exception):
            await msg.nak()


async def _idle(sub: JetStreamContext.PullSubscription) -> bool:
    """Nothing left for this consumer, counting messages nak'ed for a later redelivery."""
    info = await sub.consumer_info()
    return info.num_pending == 0 and info.num_ack_pending == 0
