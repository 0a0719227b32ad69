"""How late scheduled slots fire on an idle stack: p50, p99 and max lateness.

    .venv/bin/python -m bench.schedule [SLOTS] [--spacing SECONDS]

Starts NATS and the store (the launcher, as ``make run`` does; no AWS: the scheduler needs
none) and the scheduler service as its own process. Then it writes SLOTS transactions as
ingest leaves them (one slot of one 20-message batch each), their slots due ``--spacing``
seconds apart (default 1.2) from 10 s on, and hands each to the scheduler
(``email.tx.ingested``), which publishes one JetStream schedule per slot. Once every slot has
fired it reads what the scheduler recorded per slot: the lateness measured when the fired
schedule reached it (``lateness_seconds``: now - the slot's time), and when it had released
the slot's batch (``fired_at``). The goal is p99 lateness under 1 s.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shared.broker import connect_broker
from shared.documents import (
    Batch,
    Message,
    S3Location,
    Schedule,
    Slot,
    StatusEntry,
    Transaction,
    from_document,
    message_id,
    to_document,
)
from shared.events import TxIngested
from shared.indexes import ensure_indexes
from shared.schedule import fire_time, slot_of
from shared.status import MessageStatus, TxStatus
from shared.store import Store, connect_store
from shared.topology import Subjects, ensure_topology
from stack.launcher import Stack, StackInfo

DB = "bench_schedule"
ROWS = 20
LEAD = 10.0  # seconds before the first slot: the scheduler is up and idle by then


async def seed(store: Store, at: datetime) -> str:
    """A transaction as ingest leaves it: PROCESSING, one slot due at ``at``."""
    now = datetime.now(UTC)
    tx_id = uuid.uuid4().hex
    fire = fire_time(at)
    rows = list(range(2, 2 + ROWS))
    await store.batches.insert_one(
        to_document(
            Batch(id=f"{tx_id}:0", transaction_id=tx_id, number=0, rows=rows, slot=slot_of(at))
        )
    )
    await store.messages.insert_many(
        [
            to_document(
                Message(
                    id=message_id(tx_id, row),
                    transaction_id=tx_id,
                    tenant="bench",
                    batch=0,
                    row=row,
                    email=f"r{row}@example.org",
                    data={},
                    status=MessageStatus.SCHEDULED,
                    send_at=at,
                    updated_at=now,
                )
            )
            for row in rows
        ]
    )
    slot = Slot(
        id=f"{tx_id}:{slot_of(at)}",
        transaction_id=tx_id,
        slot=slot_of(at),
        fire_at=fire,
        batches=[0],
    )
    await store.slots.insert_one(to_document(slot))
    tx = Transaction(
        id=tx_id,
        tenant="bench",
        status=TxStatus.PROCESSING,
        template_id="bench",
        source=S3Location(bucket="bench", key=f"{tx_id}.csv"),
        send_at=at,
        counters={"total": ROWS, "invalid": 0, "suppressed": 0, "scheduled": ROWS},
        batches=1,
        schedule=Schedule(slots=1, first_at=fire, last_at=fire),
        status_history=[StatusEntry(status=TxStatus.PROCESSING, at=now)],
        created_at=now,
        updated_at=now,
    )
    await store.transactions.insert_one(to_document(tx))
    return tx_id


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))]


async def measure(info: StackInfo, slots: int, spacing: float) -> list[Slot]:
    store = await connect_store(info.mongodb_uri, DB)
    broker = await connect_broker(info.nats_url, "bench-schedule")
    try:
        await ensure_indexes(store.db)
        await ensure_topology(broker.js)
        start = datetime.now(UTC) + timedelta(seconds=LEAD)
        ids = []
        for i in range(slots):
            # Times with milliseconds, as clients send them: the fire time rounds up.
            at = start + timedelta(seconds=i * spacing, milliseconds=137)
            tx_id = await seed(store, at)
            await broker.publish(
                Subjects.TX_INGESTED, TxIngested(transaction_id=tx_id, batches=1), msg_id=tx_id
            )
            ids.append(tx_id)
        print(f"{slots} slots seeded, {spacing}s apart, first in {LEAD:.0f}s")
        last = start + timedelta(seconds=(slots - 1) * spacing)
        await asyncio.sleep(max(0.0, (last - datetime.now(UTC)).total_seconds()))
        deadline = time.monotonic() + 30
        while True:
            found = [
                from_document(doc, Slot)
                async for doc in store.slots.find({"transaction_id": {"$in": ids}})
            ]
            fired = [slot for slot in found if slot.fired_at is not None]
            if len(fired) == slots or time.monotonic() > deadline:
                return fired
            await asyncio.sleep(0.2)
    finally:
        await store.client.drop_database(DB)
        await store.close()
        await broker.close()


def main() -> None:
    slots = int(next((a for a in sys.argv[1:] if a.isdigit()), "50"))
    spacing = float(sys.argv[sys.argv.index("--spacing") + 1]) if "--spacing" in sys.argv else 1.2
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # Named as given, so the launcher starts no AWS servers: the scheduler uses none.
        stack = Stack(root / "stack", environ={"AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
        with stack as info:
            env = {
                **os.environ,
                **info.env(),
                "MONGODB_DB": DB,
                "LOG_FORMAT": "json",
            }
            stack.processes.start(
                "scheduler", [sys.executable, "-m", "services.scheduler"], env=env, cwd=root
            )
            fired = asyncio.run(measure(info, slots, spacing))
    lateness = [slot.lateness_seconds or 0.0 for slot in fired]
    released = [(slot.fired_at - slot.fire_at).total_seconds() for slot in fired if slot.fired_at]
    print(f"slots fired: {len(fired)} of {slots}")
    if not fired:
        return
    for name, values in (
        ("lateness (fired schedule reached the scheduler)", lateness),
        ("until the slot's batch was released", released),
    ):
        print(
            f"{name}: p50 {statistics.median(values) * 1000:.0f} ms, "
            f"p99 {percentile(values, 99) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms"
        )
    p99 = percentile(lateness, 99)
    print(f"p99 lateness {p99:.3f} s (goal < 1 s): {'met' if p99 < 1 else 'NOT met'}")


if __name__ == "__main__":
    main()
