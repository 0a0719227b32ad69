"""A transaction's slots (``shared.documents.Slot``): publishing their schedules, firing them.

A slot waiting for a time becomes one schedule message on ``email.schedule.<tx>.<slot>``
(``Nats-Schedule: @at <time>``, target ``email.tx.due``) carrying ``TxDue`` with the
transaction's schedule generation; the server fires it, nothing here polls. Publishing the
same slot again replaces its schedule (one schedule per subject), and the ``Nats-Msg-Id``
(transaction, slot, generation) lets the stream drop a repeat.

Firing a slot releases its batches: per batch, its messages move SCHEDULED -> READY_TO_SEND
with the transaction's counters in one store transaction (``move_messages``), then
``SendBatch`` goes to the sender with the id ``<tx>:batch:<n>``. The slot is marked fired
last, with its lateness: a crash before that repeats the release, which moves nothing twice
(only SCHEDULED messages move) and publishes nothing twice (the id), and the lateness is
recorded, in the slot and in the metric, by whichever run marks it.
"""

from __future__ import annotations

from datetime import UTC, datetime

import structlog

from shared.broker import Broker
from shared.documents import Batch, Slot, Transaction, from_document, message_id
from shared.events import SendBatch, TxDue
from shared.metrics import SCHEDULE_LATENESS
from shared.schedule import IMMEDIATE, schedule_stamp, shifted
from shared.status import MessageStatus as M
from shared.store import Store
from shared.topology import CONSUMERS, Subjects
from shared.transitions import move_messages

__all__ = [
    "SCHEDULES_STREAM",
    "batches_of",
    "fire",
    "fires_at",
    "generation",
    "lateness",
    "load_slot",
    "load_slots",
    "publish_schedule",
    "purge_schedules",
]

log = structlog.get_logger("scheduler")

# The stream that holds the schedules and what they fire.
SCHEDULES_STREAM = CONSUMERS.SCHEDULER_DUE.stream
# Batch documents read per query while releasing or cancelling.
_BATCHES_PER_READ = 50


def generation(tx: Transaction) -> int:
    return 0 if tx.schedule is None else tx.schedule.generation


def fires_at(slot: Slot, tx: Transaction) -> datetime:
    """When ``slot`` fires now: its planned time moved by the transaction's reschedules."""
    if slot.slot == IMMEDIATE or tx.schedule is None:
        return slot.fire_at
    return shifted(slot.fire_at, tx.schedule.shift_seconds)


def lateness(slot: Slot, tx: Transaction, now: datetime) -> float:
    return max(0.0, (now - fires_at(slot, tx)).total_seconds())


async def load_slots(store: Store, tx: Transaction) -> list[Slot]:
    """The transaction's slots in firing order."""
    found = store.slots.find({"transaction_id": tx.id}).sort("fire_at", 1)
    slots = [from_document(doc, Slot) async for doc in found]
    if not slots and tx.batches:
        # Ingested before slots were recorded: every batch at once.
        slots = [
            Slot(
                id=f"{tx.id}:{IMMEDIATE}",
                transaction_id=tx.id,
                slot=IMMEDIATE,
                fire_at=tx.created_at,
                batches=list(range(tx.batches)),
            )
        ]
    return slots


async def load_slot(store: Store, transaction_id: str, slot: str) -> Slot | None:
    raw = await store.slots.find_one({"_id": f"{transaction_id}:{slot}"})
    return None if raw is None else from_document(raw, Slot)


async def publish_schedule(broker: Broker, tx: Transaction, slot: Slot) -> str:
    """The slot's schedule message; returns the time it fires at (RFC 3339)."""
    gen = generation(tx)
    at = schedule_stamp(fires_at(slot, tx))
    await broker.publish(
        Subjects.schedule(tx.id, slot.slot),
        TxDue(transaction_id=tx.id, slot=slot.slot, generation=gen),
        msg_id=f"{tx.id}:schedule:{slot.slot}:{gen}",
        headers={"Nats-Schedule": f"@at {at}", "Nats-Schedule-Target": Subjects.TX_DUE},
    )
    return at


async def purge_schedules(broker: Broker, transaction_id: str) -> None:
    """Cancel every pending schedule of the transaction."""
    await broker.purge(SCHEDULES_STREAM, Subjects.schedule(transaction_id, ">"))


async def batches_of(store: Store, transaction_id: str, numbers: list[int]) -> list[list[Batch]]:
    """The batch documents ``numbers``, in order, a few at a time (each a list)."""
    groups = []
    for start in range(0, len(numbers), _BATCHES_PER_READ):
        wanted = numbers[start : start + _BATCHES_PER_READ]
        ids = [f"{transaction_id}:{number}" for number in wanted]
        found = {
            doc["number"]: from_document(doc, Batch)
            async for doc in store.batches.find({"_id": {"$in": ids}})
        }
        missing = [number for number in wanted if number not in found]
        if missing:
            log.error("batches missing", batches=missing)
        groups.append([found[number] for number in wanted if number in found])
    return groups


async def fire(
    store: Store, broker: Broker, tx: Transaction, slot: Slot, *, late: float | None
) -> int:
    """Release the slot's batches to the sender and mark it fired ``late`` seconds after its
    time (None for the slot of rows due at once); returns how many messages moved."""
    moved = 0
    for group in await batches_of(store, tx.id, slot.batches):
        for batch in group:
            if slot.slot != IMMEDIATE:
                ids = [message_id(tx.id, row) for row in batch.rows]
                moved += await move_messages(store, tx.id, ids, M.SCHEDULED, M.READY_TO_SEND)
            await broker.publish(
                Subjects.SEND_BATCH,
                SendBatch(transaction_id=tx.id, batch=batch.number),
                msg_id=f"{tx.id}:batch:{batch.number}",
            )
    fields: dict[str, object] = {"fired_at": datetime.now(UTC)}
    if late is not None:
        fields["lateness_seconds"] = round(late, 3)
    marked = await store.slots.update_one({"_id": slot.id, "fired_at": None}, {"$set": fields})
    if marked.matched_count == 1 and late is not None:
        SCHEDULE_LATENESS.observe(late)
    log.info(
        "slot fired",
        slot=slot.slot,
        batches=len(slot.batches),
        moved=moved,
        lateness=None if late is None else round(late, 3),
    )
    return moved
