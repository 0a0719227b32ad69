"""The SES events actor: a batch of SES events in, message outcomes and counters out.

For each batch (``SesEvents`` on ``email.ses.events``):

1. keep a receipt for every Send event (the proof SES has the mail), then find each event's
   message: by the ``transaction_id``/``row`` tags, else (an identity notification carries
   no tags) by the SES message id in the receipts, in one query per batch;
2. apply each message's events in the order they happened: an outcome is a conditional move
   (``move_message``) that pushes the event onto the message's ``events``; an event that
   changes no status (record-only, or an outcome the message is past) is added to
   ``events`` with ``$addToSet``, so a redelivered batch does not record it twice;
3. one ``$inc`` per transaction of the moves that matched: -1 on the old status, +1 on the new;
4. a completion check for every transaction the batch is about.

Messages are worked on concurrently; one message's events in sequence. An event about a
message we do not know is logged and dropped.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
import structlog

from services.tracker.completion import complete_if_done
from services.tracker.outcome import outcome_for
from services.tracker.ses_event import SesEvent, SesEventKind, parse_ses_event
from shared.actor import Actor
from shared.broker import Broker
from shared.documents import SendReceipt, to_document
from shared.events import SesEvents
from shared.settlement import settle
from shared.status import MessageStatus
from shared.store import Store, insert_new
from shared.topology import CONSUMERS
from shared.transitions import move_message

__all__ = ["Move", "SesEventsActor", "counter_deltas"]

log = structlog.get_logger("tracker.events")

_LATEST: Final = datetime.max.replace(tzinfo=UTC)


class _Target(msgspec.Struct, frozen=True):
    message_id: str
    transaction_id: str


class Move(msgspec.Struct, frozen=True):
    """One message status change that matched."""

    transaction_id: str
    old: MessageStatus
    new: MessageStatus


class _Tally(msgspec.Struct, kw_only=True):
    """What one batch did, for its canonical log line (local to one ``handle``)."""

    moved: int = 0
    recorded: int = 0
    unknown: int = 0
    # Transactions with at least one message found.
    transactions: set[str] = msgspec.field(default_factory=set)


def counter_deltas(moves: Iterable[Move]) -> dict[str, dict[str, int]]:
    """Per transaction, the ``counters.<status>`` increments the moves add up to."""
    deltas: dict[str, Counter[str]] = defaultdict(Counter)
    for move in moves:
        deltas[move.transaction_id][move.old.lower()] -= 1
        deltas[move.transaction_id][move.new.lower()] += 1
    return {
        tx: {key: value for key, value in sorted(counts.items()) if value}
        for tx, counts in deltas.items()
    }


class SesEventsActor(Actor[SesEvents]):
    spec = CONSUMERS.TRACKER_EVENTS
    event_type = SesEvents

    def __init__(self, store: Store, broker: Broker, *, parallel: int = 16) -> None:
        self.store = store
        self.broker = broker
        self.parallel = parallel

    async def handle(self, event: SesEvents) -> None:
        parsed = [parse_ses_event(raw) for raw in event.events if isinstance(raw, Mapping)]
        await self._keep_receipts(parsed)
        by_message, unmapped = await self._find_messages(parsed)
        moves: list[Move] = []
        tally = _Tally()
        slots = asyncio.Semaphore(self.parallel)

        async def apply(target: _Target, events: list[SesEvent]) -> None:
            async with slots:
                await self._apply(target, events, moves, tally)

        results = await asyncio.gather(
            *(apply(target, events) for target, events in by_message.items()),
            return_exceptions=True,
        )
        # The moves that matched are counted even if others failed: a redelivered batch
        # will not match them again.
        deltas = counter_deltas(moves)
        await self._count(deltas)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        # Every transaction the batch is about, moved or not: a redelivery of a batch whose
        # completion check failed moves nothing the second time.
        touched = sorted(tally.transactions)
        for tx in touched:
            # An outcome that overtook the sender's record may be the last pending move.
            await settle(self.store, self.broker, tx)
        completed = [tx for tx in touched if await complete_if_done(self.store, self.broker, tx)]
        log.info(
            "ses events",
            events=len(event.events),
            messages=len(by_message),
            moved=tally.moved,
            recorded=tally.recorded,
            unknown=tally.unknown,
            unmapped=unmapped,
            transactions=touched,
            completed=completed,
        )

    async def _keep_receipts(self, events: list[SesEvent]) -> None:
        """A Send event proves SES accepted the mail: the sender reads these receipts to
        settle the sends a crash left without an answer (services/sender/sending.py)."""
        now = datetime.now(UTC)
        receipts = [
            to_document(
                SendReceipt(
                    id=e.message_id,
                    transaction_id=e.transaction_id,
                    ses_message_id=e.ses_message_id,
                    at=e.timestamp or now,
                    source="tracker",
                )
            )
            for e in events
            if e.kind == SesEventKind.SEND
            and e.message_id is not None
            and e.transaction_id is not None
            and e.ses_message_id is not None
        ]
        await insert_new(self.store.sends, receipts)

    async def _find_messages(
        self, events: list[SesEvent]
    ) -> tuple[dict[_Target, list[SesEvent]], int]:
        """Each event's message; events whose message cannot be told are counted and dropped."""
        by_message: dict[_Target, list[SesEvent]] = defaultdict(list)
        untagged: dict[str, list[SesEvent]] = defaultdict(list)
        unmapped = 0
        for event in events:
            if event.message_id is not None and event.transaction_id is not None:
                by_message[_Target(event.message_id, event.transaction_id)].append(event)
            elif event.ses_message_id is not None:
                untagged[event.ses_message_id].append(event)
            else:
                unmapped += 1
                log.warning("ses event names no message", kind=event.kind)
        if untagged:
            found = self.store.sends.find(
                {"ses_message_id": {"$in": sorted(untagged)}},
                {"_id": 1, "transaction_id": 1, "ses_message_id": 1},
            )
            async for raw in found:
                target = _Target(str(raw["_id"]), str(raw["transaction_id"]))
                by_message[target].extend(untagged.pop(str(raw["ses_message_id"]), []))
            for ses_message_id, lost in untagged.items():
                unmapped += len(lost)
                log.warning("ses event for an unknown ses message", ses_message_id=ses_message_id)
        for batch in by_message.values():
            batch.sort(key=lambda e: e.timestamp or _LATEST)
        return by_message, unmapped

    async def _apply(
        self, target: _Target, events: list[SesEvent], moves: list[Move], tally: _Tally
    ) -> None:
        for event in events:
            record = _record(event)
            outcome = outcome_for(event)
            if outcome.status is not None:
                old = await move_message(
                    self.store,
                    target.message_id,
                    outcome.candidates,
                    outcome.status,
                    event=record,
                )
                if old is not None:
                    moves.append(Move(target.transaction_id, old, outcome.status))
                    tally.moved += 1
                    tally.transactions.add(target.transaction_id)
                    continue
            result = await self.store.messages.update_one(
                {"_id": target.message_id}, {"$addToSet": {"events": record}}
            )
            if result.matched_count == 0:
                tally.unknown += 1
                log.warning(
                    "ses event for an unknown message",
                    transaction_id=target.transaction_id,
                    message_id=target.message_id,
                    kind=event.kind,
                )
                return
            tally.recorded += 1
            tally.transactions.add(target.transaction_id)

    async def _count(self, deltas: Mapping[str, Mapping[str, int]]) -> None:
        for transaction_id, delta in deltas.items():
            if delta:
                await self.store.transactions.update_one(
                    {"_id": transaction_id},
                    {"$inc": {f"counters.{key}": value for key, value in delta.items()}},
                )


def _record(event: SesEvent) -> dict[str, Any]:
    """The event as it is kept on its message (the message names the transaction and row)."""
    document = to_document(event)
    document.pop("transaction_id", None)
    document.pop("row", None)
    return document
