"""The SES events actor: a batch of SES events in, message outcomes and counters out.

For each batch (``SesEvents`` on ``email.ses.events``):

1. keep a receipt for every Send event (the proof SES has the mail), then find each event's
   message: by the ``transaction_id``/``row`` tags, else (an identity notification carries
   no tags) by the SES message id in the receipts, in one query per batch (per 250 ids:
   ``shared.store.MAX_IN``);
2. read the batch's messages, one query per run of rows (shared/message_ranges.py), and
   fold each message's events over its status in the order they happened
   (services/tracker/outcome.py); events put addresses on the suppression list whatever
   the status;
3. move the messages by (transaction, old, new) group, each transaction's groups together
   (``move_groups``): each message's update and the counters' ``$inc`` in one store
   transaction, so a crash between them cannot leave the counters off, and a redelivered
   batch matches nothing again;
4. add the events to each message's ``events``, each once: an event has the same ``key`` in
   both SES formats and on every redelivery, and is pushed only where that key is absent.
   A message that moves gets its events in the update that moves it (one write, not two);
   the others get theirs in one ``bulk_write`` after the moves;
5. announce the outcomes on ``email.msg.status.<STATUS>``, then settle and check completion
   of every transaction the batch is about.

An event about a message we do not know is logged and dropped.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
import structlog
from pymongo import UpdateOne

from services.tracker.completion import complete_read
from services.tracker.outcome import outcome_for
from services.tracker.ses_event import SesEvent, SesEventKind, parse_ses_event
from shared.actor import Actor
from shared.broker import Broker
from shared.documents import SendReceipt, Suppression, suppression_id, to_document
from shared.errors import StoreUnavailable
from shared.events import MessageOutcome, SesEvents
from shared.message_ranges import find_messages
from shared.metrics import MESSAGES_FAILED
from shared.outcomes import announce_moved
from shared.records import load_transaction
from shared.settlement import settle_read
from shared.status import MessageStatus
from shared.store import Store, find_in, insert_new
from shared.topology import CONSUMERS
from shared.transitions import MessageChange, Move, move_groups

__all__ = ["SesEventsActor", "failure_reason", "fold"]

log = structlog.get_logger("tracker.events")

_LATEST: Final = datetime.max.replace(tzinfo=UTC)
# Rounds of moves a batch makes while other writers move its messages (see ``_apply``).
_ROUNDS: Final = 8


class _Target(msgspec.Struct, frozen=True):
    message_id: str
    transaction_id: str


# Messages moved together: (transaction, from, to, failure reason); the reason (empty unless
# FAILED) is in the key so that each reason is counted exactly.
_Group = tuple[str, MessageStatus, MessageStatus, str]


class _Known(msgspec.Struct, frozen=True, kw_only=True):
    """What the batch needs of a message, read once."""

    transaction_id: str
    tenant: str
    row: int
    email: str
    status: MessageStatus
    event_keys: frozenset[str]


def fold(status: MessageStatus, events: Iterable[SesEvent]) -> MessageStatus:
    """The status a message in ``status`` ends in after ``events``, in their order."""
    for event in events:
        outcome = outcome_for(event)
        if outcome.status is not None and status in outcome.candidates:
            status = outcome.status
    return status


def failure_reason(events: Iterable[SesEvent]) -> str:
    """The reason label of a message its events FAILED: the last failing event's type
    (``SES_REJECT``, ``SES_RENDERING_FAILURE``)."""
    kinds = [e.kind for e in events if outcome_for(e).status == MessageStatus.FAILED]
    kind = kinds[-1] if kinds else "unknown"
    return "SES_" + kind.upper().replace(" ", "_")


class SesEventsActor(Actor[SesEvents]):
    spec = CONSUMERS.TRACKER_EVENTS
    event_type = SesEvents
    # A batch costs about ten store round trips, plus one per run of rows it reads (or per
    # 250 scattered messages: shared/message_ranges.py); the SQS poller publishes up to a
    # hundred events at a time and the simulator a few hundred, so join up to 50 deliveries.
    merge_limit = 50

    def __init__(self, store: Store, broker: Broker) -> None:
        self.store = store
        self.broker = broker
        # One store transaction at a time in this process: batches handled together move
        # the same transaction's counters, and concurrent store transactions on one
        # document conflict and retry (the sender measured 164 -> 447 messages/s).
        self._writes = asyncio.Lock()

    def merge(self, events: Sequence[SesEvents]) -> SesEvents:
        return SesEvents(events=[raw for event in events for raw in event.events])

    async def handle(self, event: SesEvents) -> None:
        parsed = [parse_ses_event(raw) for raw in event.events if isinstance(raw, Mapping)]
        await self._keep_receipts(parsed)
        by_message, unmapped = await self._find_messages(parsed)
        known = await self._read(by_message)
        unknown = [t for t in by_message if t.message_id not in known]
        for target in unknown:
            log.warning(
                "ses event for an unknown message",
                transaction_id=target.transaction_id,
                message_id=target.message_id,
            )
            del by_message[target]
        await self._suppress(by_message, known)
        moved, known = await self._apply(by_message, known)
        recorded = await self._record(by_message, known)
        # Every transaction the batch is about, moved or not: a redelivery of a batch whose
        # completion check failed moves nothing the second time.
        touched = sorted({t.transaction_id for t in by_message})
        completed = [tx for tx in touched if await self._settle_and_complete(tx)]
        log.info(
            "ses events",
            events=len(event.events),
            messages=len(by_message),
            moved=moved,
            recorded=recorded,
            unknown=len(unknown),
            unmapped=unmapped,
            transactions=touched,
            completed=completed,
        )

    async def _settle_and_complete(self, transaction_id: str) -> bool:
        """True when this batch completed the transaction; one read of it, two when it
        settles (an outcome that overtook the sender's record may be the last pending move)."""
        tx = await load_transaction(self.store, transaction_id)
        if await settle_read(self.store, self.broker, tx) is not None:
            tx = await load_transaction(self.store, transaction_id)
        return await complete_read(self.store, self.broker, tx)

    async def _apply(
        self, by_message: Mapping[_Target, list[SesEvent]], known: dict[str, _Known]
    ) -> tuple[int, dict[str, _Known]]:
        """Move each message to the status its events fold to from the status it is in,
        with its events not recorded yet; returns how many moved, and the messages as they
        are now (as last read, or as a move left them).

        A group that moved fewer messages than asked met another writer (the same events by
        the other path, the sender's record): those messages are read again and folded
        from where they are now. Outcomes only go forward, so this ends in a few rounds.
        """
        moved = 0
        targets = dict(by_message)
        for _ in range(_ROUNDS):
            groups: dict[_Group, list[str]] = defaultdict(list)
            records: dict[str, dict[str, dict[str, Any]]] = {}
            for target, events in targets.items():
                current = known[target.message_id]
                new = fold(current.status, events)
                if new != current.status:
                    reason = failure_reason(events) if new == MessageStatus.FAILED else ""
                    key = (target.transaction_id, current.status, new, reason)
                    groups[key].append(target.message_id)
                    records[target.message_id] = _unrecorded(events, current.event_keys)
            short: set[str] = set()
            by_transaction: dict[str, list[tuple[_Group, list[str]]]] = defaultdict(list)
            for key, ids in sorted(groups.items()):
                by_transaction[key[0]].append((key, ids))
            for transaction_id, its_groups in by_transaction.items():
                done = await self._move(transaction_id, its_groups, known, records)
                for ((_, _, new, reason), ids), n in zip(its_groups, done, strict=True):
                    if reason:
                        MESSAGES_FAILED.labels(reason).inc(n)
                    moved += n
                    if n < len(ids):
                        short.update(ids)
                    else:
                        known = {**known, **_moved(known, ids, new, records)}
            if not short:
                return moved, known
            targets = {t: e for t, e in targets.items() if t.message_id in short}
            known = {**known, **await self._read(targets)}
        raise StoreUnavailable(f"messages kept changing under {_ROUNDS} rounds of moves")

    async def _move(
        self,
        transaction_id: str,
        groups: Sequence[tuple[_Group, list[str]]],
        known: Mapping[str, _Known],
        records: Mapping[str, Mapping[str, dict[str, Any]]],
    ) -> list[int]:
        """Move one transaction's groups together, each message with its events not
        recorded yet, and announce the messages that moved; how many of each group moved."""
        moves = [
            Move(ids=ids, old=old, new=new, each={i: _recording(records[i]) for i in ids})
            for (_, old, new, _), ids in groups
        ]
        async with self._writes:
            moved = await move_groups(self.store, transaction_id, moves)
        first_id = moves[0].ids[0]
        tenant = known[first_id].tenant
        for move, n in zip(moves, moved, strict=True):
            outcomes = {
                i: MessageOutcome(message_id=i, row=known[i].row, email=known[i].email)
                for i in move.ids
            }
            await announce_moved(
                self.store, self.broker, transaction_id, tenant, move.new, move.ids, n, outcomes
            )
        return moved

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
            found = find_in(
                self.store.sends,
                "ses_message_id",
                sorted(untagged),
                projection={"_id": 1, "transaction_id": 1, "ses_message_id": 1},
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

    async def _read(self, by_message: Mapping[_Target, list[SesEvent]]) -> dict[str, _Known]:
        if not by_message:
            return {}
        found = find_messages(
            self.store.messages,
            [t.message_id for t in by_message],
            projection={
                "transaction_id": 1,
                "tenant": 1,
                "row": 1,
                "email": 1,
                "status": 1,
                "events.key": 1,
            },
        )
        known: dict[str, _Known] = {}
        async for raw in found:
            events = raw.get("events") or []
            known[str(raw["_id"])] = _Known(
                transaction_id=str(raw["transaction_id"]),
                tenant=str(raw["tenant"]),
                row=int(raw["row"]),
                email=str(raw["email"]),
                status=MessageStatus(raw["status"]),
                event_keys=frozenset(str(e["key"]) for e in events if "key" in e),
            )
        return known

    async def _suppress(
        self, by_message: Mapping[_Target, list[SesEvent]], known: Mapping[str, _Known]
    ) -> None:
        now = datetime.now(UTC)
        entries: dict[str, dict[str, Any]] = {}
        for target, events in by_message.items():
            message = known[target.message_id]
            for event in events:
                reason = outcome_for(event).suppress
                if reason is not None:
                    key = suppression_id(message.tenant, message.email)
                    entries.setdefault(
                        key,
                        to_document(
                            Suppression(
                                id=key,
                                tenant=message.tenant,
                                email=message.email.lower(),
                                reason=reason,
                                created_at=now,
                            )
                        ),
                    )
        # An address already on the list keeps its first reason.
        await insert_new(self.store.suppressions, list(entries.values()))

    async def _record(
        self, by_message: Mapping[_Target, list[SesEvent]], known: Mapping[str, _Known]
    ) -> int:
        """Add each event not yet on its message: one update per message, its new events
        pushed together where none of their keys is there yet. A concurrent delivery of
        the same events (the other path) makes that guard miss: the batch then adds its
        events one by one, each where its own key is absent, so none is added twice or
        left out."""
        new: dict[str, dict[str, dict[str, Any]]] = {}
        for target, events in by_message.items():
            records = _unrecorded(events, known[target.message_id].event_keys)
            if records:
                new[target.message_id] = records
        if not new:
            return 0
        changes = {message_id: _recording(records) for message_id, records in new.items()}
        together = [
            UpdateOne({"_id": message_id, **change.query}, change.update)
            for message_id, change in changes.items()
        ]
        result = await self.store.messages.bulk_write(together, ordered=False)
        if result.modified_count == len(together):
            return sum(len(records) for records in new.values())
        one_by_one = [
            UpdateOne(
                {"_id": message_id, "events.key": {"$ne": key}}, {"$push": {"events": record}}
            )
            for message_id, records in new.items()
            for key, record in records.items()
        ]
        result = await self.store.messages.bulk_write(one_by_one, ordered=False)
        return result.modified_count


def _unrecorded(events: Iterable[SesEvent], seen: frozenset[str]) -> dict[str, dict[str, Any]]:
    """The events not on their message yet, as kept there, by key (each key once)."""
    records: dict[str, dict[str, Any]] = {}
    for event in events:
        if event.key not in seen:
            records.setdefault(event.key, _record(event, event.key))
    return records


def _recording(records: Mapping[str, dict[str, Any]]) -> MessageChange:
    """Push ``records`` where none of their keys is on the message yet."""
    if not records:
        return MessageChange({}, {})
    return MessageChange(
        {"events.key": {"$nin": list(records)}},
        {"$push": {"events": {"$each": list(records.values())}}},
    )


def _moved(
    known: Mapping[str, _Known],
    ids: Iterable[str],
    status: MessageStatus,
    records: Mapping[str, Mapping[str, Any]],
) -> dict[str, _Known]:
    """The messages of ``ids`` as a move to ``status`` with their records left them."""
    return {
        i: msgspec.structs.replace(
            known[i], status=status, event_keys=known[i].event_keys | set(records[i])
        )
        for i in ids
    }


def _record(event: SesEvent, key: str) -> dict[str, Any]:
    """The event as it is kept on its message (the message names the transaction and row)."""
    document = to_document(event)
    document.pop("transaction_id", None)
    document.pop("row", None)
    return {"key": key, **document}
