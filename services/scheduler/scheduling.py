"""When a transaction may send: its slots, each at its own time, through JetStream schedules.

Ingest hands a transaction over (``TxIngested``) with its slots stored (``Slot``: rows due
in the same minute, or due at once). ``plan`` publishes one schedule message per slot that
waits for a time and releases at once the slots already due:

    every slot waits           PROCESSING -> SCHEDULED
    some slot is due now       PROCESSING -> READY_TO_SEND, its batches to the sender
    nothing left to send       PROCESSING -> READY_TO_SEND -> (settle) SENT

When a slot's schedule fires (``TxDue`` on ``email.tx.due``), ``DueActor`` releases that
slot's batches; the first slot to fire moves the transaction SCHEDULED -> READY_TO_SEND with
its lateness (how long after its time it fired) in the status history. Every slot's lateness
goes to the ``email_schedule_lateness_seconds`` histogram and its ``Slot`` document. A fired
slot whose transaction was cancelled, rescheduled since (an older generation), or is no longer
sending is stale and does nothing. After releasing, ``settle`` decides whether the sending
phase is over (all suppressed, say).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import structlog

from services.scheduler.cancellation import cancel_waiting
from services.scheduler.slots import (
    fire,
    fires_at,
    generation,
    lateness,
    load_slot,
    load_slots,
    publish_schedule,
)
from shared.actor import Actor
from shared.broker import Broker
from shared.documents import Slot, Transaction
from shared.events import TxDue, TxIngested
from shared.records import load_transaction
from shared.schedule import IMMEDIATE
from shared.settlement import pending_messages, settle
from shared.status import TxStatus
from shared.store import Store
from shared.topology import CONSUMERS
from shared.transitions import transition_tx

__all__ = ["DueActor", "IngestedActor", "plan"]

log = structlog.get_logger("scheduler")

# A transaction whose slots may still fire.
_SENDING = (TxStatus.PROCESSING, TxStatus.SCHEDULED, TxStatus.READY_TO_SEND)


async def plan(store: Store, broker: Broker, tx: Transaction, slots: list[Slot]) -> None:
    """Publish the schedules of the slots that wait for a time, release the ones due now.

    Schedules go out before the transaction becomes SCHEDULED, so a SCHEDULED transaction
    has all of them; a repeat (a redelivery, a reschedule) publishes the same ones again.
    """
    now = datetime.now(UTC)
    waiting = [slot for slot in slots if slot.fired_at is None]
    due = [slot for slot in waiting if fires_at(slot, tx) <= now]
    due_ids = {slot.id for slot in due}
    first: str | None = None
    for slot in waiting:
        if slot.id not in due_ids:
            at = await publish_schedule(broker, tx, slot)
            first = first or at
    if tx.status in (TxStatus.PROCESSING, TxStatus.SCHEDULED):
        if not due and pending_messages(tx.counters) > 0:
            if tx.status == TxStatus.PROCESSING:
                planned = {"send_at": first, "slots": len(waiting)}
                await transition_tx(store, broker, tx, TxStatus.SCHEDULED, metadata=planned)
            log.info("scheduled", first=first, slots=len(waiting))
            return
        metadata: dict[str, Any] = {}
        if due and all(slot.slot != IMMEDIATE for slot in due):
            metadata = {"lateness_seconds": round(lateness(due[0], tx, now), 3)}
        await transition_tx(store, broker, tx, TxStatus.READY_TO_SEND, metadata=metadata)
        tx = await load_transaction(store, tx.id)
    if tx.status != TxStatus.READY_TO_SEND:
        log.info("not releasing", status=tx.status)
        return
    for slot in due:
        late = None if slot.slot == IMMEDIATE else lateness(slot, tx, now)
        await fire(store, broker, tx, slot, late=late)
    await settle(store, broker, tx.id)
    log.info("planned", due=len(due), scheduled=len(waiting) - len(due), first=first)


class IngestedActor(Actor[TxIngested]):
    spec = CONSUMERS.SCHEDULER_INGESTED
    event_type = TxIngested

    def __init__(self, store: Store, broker: Broker) -> None:
        self.store = store
        self.broker = broker

    async def handle(self, event: TxIngested) -> None:
        tx = await load_transaction(self.store, event.transaction_id)
        if tx.cancel_requested_at is not None and tx.status in _SENDING:
            # Cancelled while ingest read the file: what it wrote is cancelled now.
            await cancel_waiting(self.store, self.broker, tx)
            return
        if tx.status not in (TxStatus.PROCESSING, TxStatus.READY_TO_SEND):
            # SCHEDULED: every schedule is in place; the due actor takes it from here.
            log.info("already planned", status=tx.status)
            return
        await plan(self.store, self.broker, tx, await load_slots(self.store, tx))


class DueActor(Actor[TxDue]):
    spec = CONSUMERS.SCHEDULER_DUE
    event_type = TxDue

    def __init__(self, store: Store, broker: Broker) -> None:
        self.store = store
        self.broker = broker

    async def handle(self, event: TxDue) -> None:
        now = datetime.now(UTC)
        tx = await load_transaction(self.store, event.transaction_id)
        bound = log.bind(slot=event.slot, generation=event.generation)
        if (
            tx.cancel_requested_at is not None
            or tx.status not in _SENDING
            or event.generation != generation(tx)
        ):
            bound.info("stale slot", status=tx.status, current=generation(tx))
            return
        slot = await load_slot(self.store, tx.id, event.slot)
        if slot is None or slot.fired_at is not None:
            bound.info("slot already fired" if slot else "no such slot")
            return
        late = lateness(slot, tx, now)
        if tx.status in (TxStatus.PROCESSING, TxStatus.SCHEDULED):
            metadata = {"lateness_seconds": round(late, 3), "slot": slot.slot}
            await transition_tx(
                self.store, self.broker, tx, TxStatus.READY_TO_SEND, metadata=metadata
            )
            tx = await load_transaction(self.store, tx.id)
        if tx.status != TxStatus.READY_TO_SEND:
            bound.info("not releasing", status=tx.status)
            return
        await fire(self.store, self.broker, tx, slot, late=late)
        await settle(self.store, self.broker, tx.id)
