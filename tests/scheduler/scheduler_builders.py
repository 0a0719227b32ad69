"""What ingest leaves for the scheduler, written straight into the store: a transaction in
PROCESSING with its counters and schedule, one batch of messages per slot, the slots."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from shared.documents import (
    Batch,
    Message,
    S3Location,
    Schedule,
    Slot,
    StatusEntry,
    Transaction,
    message_id,
    to_document,
)
from shared.schedule import IMMEDIATE, fire_time, slot_of
from shared.status import MessageStatus, TxStatus
from shared.store import Store
from shared.topology import Subjects


def soon(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def seed_transaction(
    store: Store, send_times: Sequence[datetime | None], *, rows_per_slot: int = 2
) -> Transaction:
    """A transaction ingested with one slot per entry of ``send_times`` (None: due at once),
    ``rows_per_slot`` messages each, one batch per slot."""
    now = datetime.now(UTC)
    tx_id = uuid.uuid4().hex
    slots: list[Slot] = []
    messages: list[dict[str, Any]] = []
    counters = {"scheduled": 0, "ready_to_send": 0}
    row = 2
    for number, at in enumerate(send_times):
        name = IMMEDIATE if at is None else slot_of(at)
        status = MessageStatus.READY_TO_SEND if at is None else MessageStatus.SCHEDULED
        rows = list(range(row, row + rows_per_slot))
        row += rows_per_slot
        counters[status.lower()] += len(rows)
        await store.batches.insert_one(
            to_document(
                Batch(
                    id=f"{tx_id}:{number}",
                    transaction_id=tx_id,
                    number=number,
                    rows=rows,
                    slot=name,
                )
            )
        )
        messages += [
            to_document(
                Message(
                    id=message_id(tx_id, r),
                    transaction_id=tx_id,
                    tenant="t",
                    batch=number,
                    row=r,
                    email=f"r{r}@example.org",
                    data={},
                    status=status,
                    send_at=at,
                    updated_at=now,
                )
            )
            for r in rows
        ]
        slots.append(
            Slot(
                id=f"{tx_id}:{name}",
                transaction_id=tx_id,
                slot=name,
                fire_at=now if at is None else fire_time(at),
                batches=[number],
            )
        )
    await store.messages.insert_many(messages)
    await store.slots.insert_many([to_document(s) for s in slots])
    waiting = [s.fire_at for s in slots if s.slot != IMMEDIATE]
    tx = Transaction(
        id=tx_id,
        tenant="t",
        status=TxStatus.PROCESSING,
        template_id="template",
        source=S3Location(bucket="b", key=f"uploads/t/{tx_id}.csv"),
        counters={
            "total": len(messages),
            "invalid": 0,
            "suppressed": 0,
            **{key: count for key, count in counters.items() if count},
        },
        batches=len(send_times),
        schedule=Schedule(
            slots=len(slots),
            first_at=min(waiting, default=None),
            last_at=max(waiting, default=None),
        ),
        status_history=[
            StatusEntry(status=TxStatus.ACCEPT, at=now),
            StatusEntry(status=TxStatus.PROCESSING, at=now),
        ],
        created_at=now,
        updated_at=now,
    )
    await store.transactions.insert_one(to_document(tx))
    return tx


async def statuses(store: Store, tx_id: str) -> dict[int, str]:
    """Each message's status, by row."""
    return {
        doc["row"]: doc["status"] async for doc in store.messages.find({"transaction_id": tx_id})
    }


async def schedule_messages(js: JetStreamContext, tx_id: str) -> dict[str, dict[str, str]]:
    """The pending schedule messages of a transaction: their headers, by subject."""
    info = await js.stream_info("SCHEDULES", subjects_filter=Subjects.schedule(tx_id, ">"))
    found = {}
    for subject in info.state.subjects or {}:
        last = await js.get_last_msg("SCHEDULES", subject)
        found[subject] = {**(last.headers or {}), "data": last.data.decode()}
    return found


async def send_batches(js: JetStreamContext) -> list[str]:
    """The ``Nats-Msg-Id`` of every SendBatch in the stream, in order."""
    info = await js.stream_info("SEND_BATCH")
    ids = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            msg = await js.get_msg("SEND_BATCH", seq)
        except NotFoundError:  # a deleted sequence
            continue
        ids.append((msg.headers or {}).get("Nats-Msg-Id", ""))
    return ids
