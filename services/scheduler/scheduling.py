"""When a transaction may send: now, or at its ``send_at`` through a JetStream schedule.

A future ``send_at`` becomes one schedule message (``Nats-Schedule: @at ...``) whose target
is ``email.tx.due``; the server fires it, so nothing here polls. Releasing a transaction
publishes its send batches with ids derived from (transaction, batch), so a release run
twice after a crash is deduplicated by the stream and, past its window, by the sender,
which only claims messages that are still waiting.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog

from shared.actor import Actor
from shared.broker import Broker
from shared.documents import Transaction
from shared.events import SendBatch, TxDue, TxIngested
from shared.records import load_transaction
from shared.status import TxStatus
from shared.store import Store
from shared.topology import CONSUMERS, Subjects
from shared.transitions import transition_tx

__all__ = ["DueActor", "IngestedActor", "release", "schedule"]

log = structlog.get_logger("scheduler")

# The whole transaction's slot; per-recipient slots come later with per-row send times.
_WHOLE = "all"


async def release(
    store: Store, broker: Broker, tx: Transaction, *, lateness: float | None = None
) -> None:
    """READY_TO_SEND, then every batch to the sender."""
    if tx.status in (TxStatus.PROCESSING, TxStatus.SCHEDULED):
        metadata = {} if lateness is None else {"lateness_seconds": round(lateness, 3)}
        await transition_tx(store, broker, tx, TxStatus.READY_TO_SEND, metadata=metadata)
        tx = await load_transaction(store, tx.id)
    if tx.status != TxStatus.READY_TO_SEND:
        log.info("not releasing", status=tx.status)
        return
    for number in range(tx.batches):
        await broker.publish(
            Subjects.SEND_BATCH,
            SendBatch(transaction_id=tx.id, batch=number),
            msg_id=f"{tx.id}:batch:{number}",
        )
    log.info("released", batches=tx.batches, lateness=lateness)


async def schedule(store: Store, broker: Broker, tx: Transaction, send_at: datetime) -> None:
    """SCHEDULED, with a schedule message that the server fires at ``send_at``."""
    # Whole seconds, rounded up: a schedule must never fire before its send_at.
    fire = send_at.astimezone(UTC)
    if fire.microsecond:
        fire = fire.replace(microsecond=0) + timedelta(seconds=1)
    at = fire.strftime("%Y-%m-%dT%H:%M:%SZ")
    await broker.publish(
        Subjects.schedule(tx.id, _WHOLE),
        TxDue(transaction_id=tx.id, slot=_WHOLE),
        msg_id=f"{tx.id}:schedule:{_WHOLE}",
        headers={"Nats-Schedule": f"@at {at}", "Nats-Schedule-Target": Subjects.TX_DUE},
    )
    await transition_tx(store, broker, tx, TxStatus.SCHEDULED, metadata={"send_at": at})
    log.info("scheduled", send_at=at)


class IngestedActor(Actor[TxIngested]):
    spec = CONSUMERS.SCHEDULER_INGESTED
    event_type = TxIngested

    def __init__(self, store: Store, broker: Broker) -> None:
        self.store = store
        self.broker = broker

    async def handle(self, event: TxIngested) -> None:
        tx = await load_transaction(self.store, event.transaction_id)
        if tx.status == TxStatus.SCHEDULED:
            return  # the schedule is in place; the due actor takes it from here
        future = tx.send_at is not None and tx.send_at > datetime.now(UTC)
        if tx.status == TxStatus.PROCESSING and tx.send_at is not None and future:
            await schedule(self.store, self.broker, tx, tx.send_at)
        else:
            await release(self.store, self.broker, tx)


class DueActor(Actor[TxDue]):
    spec = CONSUMERS.SCHEDULER_DUE
    event_type = TxDue

    def __init__(self, store: Store, broker: Broker) -> None:
        self.store = store
        self.broker = broker

    async def handle(self, event: TxDue) -> None:
        tx = await load_transaction(self.store, event.transaction_id)
        lateness = None
        if tx.send_at is not None:
            lateness = max(0.0, (datetime.now(UTC) - tx.send_at).total_seconds())
        await release(self.store, self.broker, tx, lateness=lateness)
