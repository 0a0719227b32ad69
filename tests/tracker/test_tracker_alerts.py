"""The tracker's own alert rules and the recovery of stuck transactions, on real data in
the store (transactions and slots with old timestamps) and the real ALERTS stream."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, suppress
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from nats.js.api import DeliverPolicy
from nats.js.errors import KeyNotFoundError

from services.ingest.ingestion import IngestActor
from services.sender.pause import Pause
from services.tracker.alerts import RULES, AlertWorker
from services.tracker.recovery import NOT_RECOVERED
from shared.actor import ActorRunner
from shared.alerts import load_alert
from shared.aws import open_s3
from shared.clock import stored_now
from shared.documents import (
    S3Location,
    Schedule,
    Slot,
    StatusEntry,
    Template,
    Transaction,
    to_document,
)
from shared.events import TxAccepted
from shared.records import load_transaction
from shared.service import Runtime
from shared.settings import IngestSettings, ServiceSettings, TrackerSettings, load_settings
from shared.status import AlertState, TxStatus
from shared.topology import KV, Subjects
from stack.launcher import StackInfo
from tests.conftest import settings_for

if TYPE_CHECKING:
    from nats.js import JetStreamContext
    from types_aiobotocore_s3 import S3Client

pytestmark = pytest.mark.timeout(120)

HOUR = timedelta(hours=1)


@pytest.fixture
async def alerts_rt(tracker: Runtime) -> Runtime:
    for stream in ("ALERTS", "TX_ACCEPTED", "TX_INGESTED"):
        await tracker.broker.js.purge_stream(stream)
    return tracker


def worker(rt: Runtime, stack_info: StackInfo, db_name: str, **env: str) -> AlertWorker:
    # Recovery off unless a test asks for it: the rules' tests leave stuck data in place.
    env = {"RECOVER_AFTER_SECONDS": "1000000000", **env}
    settings = load_settings(TrackerSettings, settings_for(stack_info, db_name, **env))
    return AlertWorker(rt.store, rt.broker, settings)


class Announcements:
    """What reached ``email.alerts.>`` since the test subscribed."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self.seen: list[dict[str, Any]] = []

    async def start(self) -> Announcements:
        self.sub = await self.js.subscribe(f"{Subjects.ALERTS}.>", deliver_policy=DeliverPolicy.NEW)
        return self

    async def drain(self, wait: float = 0.5) -> list[dict[str, Any]]:
        while True:
            try:
                msg = await self.sub.next_msg(timeout=wait)
            except TimeoutError:
                return self.seen
            self.seen.append(json.loads(msg.data))


@pytest.fixture
async def announcements(alerts_rt: Runtime) -> AsyncIterator[Announcements]:
    watcher = await Announcements(alerts_rt.broker.js).start()
    yield watcher
    await watcher.sub.unsubscribe()


async def put_tx(
    rt: Runtime,
    status: TxStatus,
    *,
    created: datetime,
    updated: datetime | None = None,
    tenant: str = "t",
    history: list[tuple[TxStatus, datetime]] | None = None,
    **fields: Any,
) -> str:
    tx = Transaction(
        id=uuid.uuid4().hex,
        tenant=tenant,
        status=status,
        template_id="tpl",
        source=S3Location(bucket="b", key="k"),
        status_history=[StatusEntry(status=s, at=at) for s, at in (history or [])],
        created_at=created,
        updated_at=updated or created,
        **fields,
    )
    await rt.store.transactions.insert_one(to_document(tx))
    return tx.id


def states(seen: list[dict[str, Any]], rule: str) -> list[str]:
    return [a["state"] for a in seen if a["rule"] == rule]


async def test_stuck_processing_fires_once_and_resolves_once(
    alerts_rt: Runtime, stack_info: StackInfo, db_name: str, announcements: Announcements
) -> None:
    now = datetime.now(UTC)
    rt = alerts_rt
    stuck = await put_tx(rt, TxStatus.PROCESSING, created=now - 2 * HOUR)
    await put_tx(rt, TxStatus.PROCESSING, created=now - timedelta(minutes=5))  # fine
    await put_tx(rt, TxStatus.SENT, created=now - 2 * HOUR)  # not ACCEPT/PROCESSING
    evaluator = worker(rt, stack_info, db_name)

    assert await evaluator.tick() == 1
    assert await evaluator.tick() == 0  # still firing: no second announcement
    record = await load_alert(rt.store, RULES.STUCK_PROCESSING)
    assert record is not None
    assert record.announced
    assert record.alert.state == AlertState.FIRING
    assert [t.id for t in record.alert.transactions] == [stuck]
    assert record.alert.details["count"] == 1

    await rt.store.transactions.update_one(
        {"_id": stuck}, {"$set": {"status": "READY_TO_SEND", "updated_at": datetime.now(UTC)}}
    )
    assert await evaluator.tick() == 1
    assert await evaluator.tick() == 0
    resolved = await load_alert(rt.store, RULES.STUCK_PROCESSING)
    assert resolved is not None
    assert resolved.alert.state == AlertState.RESOLVED
    assert resolved.alert.since == record.alert.since
    assert resolved.alert.at > record.alert.since
    seen = await announcements.drain()
    assert states(seen, RULES.STUCK_PROCESSING) == ["firing", "resolved"]
    # Nothing else fired on this data.
    assert {a["rule"] for a in seen} == {RULES.STUCK_PROCESSING}


async def test_failure_rate_counts_failed_against_ended_not_cancelled(
    alerts_rt: Runtime, stack_info: StackInfo, db_name: str, announcements: Announcements
) -> None:
    rt = alerts_rt
    now = datetime.now(UTC)
    created = now - timedelta(minutes=20)
    ended = now - timedelta(minutes=10)
    for _ in range(19):
        await put_tx(rt, TxStatus.COMPLETED, created=created, updated=ended)
    await put_tx(rt, TxStatus.FAILED, created=created, updated=ended)
    # Cancelled (a client's choice) and long-ended transactions do not count.
    for _ in range(5):
        await put_tx(rt, TxStatus.CANCELLED, created=created, updated=ended)
    await put_tx(rt, TxStatus.FAILED, created=now - 5 * HOUR, updated=now - 3 * HOUR)
    evaluator = worker(rt, stack_info, db_name, ALERT_SLA_SECONDS="100000")

    await evaluator.tick()  # 1 of 20: exactly 5 %, not over it
    assert await load_alert(rt.store, RULES.FAILURE_RATE) is None

    second = await put_tx(rt, TxStatus.FAILED, created=created, updated=ended, tenant="u")
    await evaluator.tick()  # 2 of 21
    record = await load_alert(rt.store, RULES.FAILURE_RATE)
    assert record is not None
    assert record.alert.state == AlertState.FIRING
    assert (record.alert.details["failed"], record.alert.details["completed"]) == (2, 19)
    assert second in [t.id for t in record.alert.transactions]

    for _ in range(30):
        await put_tx(rt, TxStatus.COMPLETED, created=created, updated=ended)
    await evaluator.tick()  # 2 of 51
    record = await load_alert(rt.store, RULES.FAILURE_RATE)
    assert record is not None
    assert record.alert.state == AlertState.RESOLVED
    assert states(await announcements.drain(), RULES.FAILURE_RATE) == ["firing", "resolved"]


async def test_slow_processing_from_acceptance_or_release(
    alerts_rt: Runtime, stack_info: StackInfo, db_name: str
) -> None:
    rt = alerts_rt
    now = datetime.now(UTC)
    evaluator = worker(rt, stack_info, db_name, ALERT_SLA_SECONDS="3600")
    # Completed in 30 min; and a campaign created two days ago, released 50 min ago,
    # completed 10 min ago: neither is slow.
    await put_tx(rt, TxStatus.COMPLETED, created=now - HOUR, updated=now - timedelta(minutes=30))
    released = now - timedelta(minutes=50)
    await put_tx(
        rt,
        TxStatus.COMPLETED,
        created=now - timedelta(days=2),
        updated=now - timedelta(minutes=10),
        history=[
            (TxStatus.ACCEPT, now - timedelta(days=2)),
            (TxStatus.SCHEDULED, now - timedelta(days=2)),
            (TxStatus.READY_TO_SEND, released),
        ],
    )
    # Waiting for its time: never slow.
    await put_tx(
        rt,
        TxStatus.SCHEDULED,
        created=now - timedelta(days=2),
        history=[(TxStatus.SCHEDULED, now - timedelta(days=2))],
    )
    await evaluator.tick()
    assert await load_alert(rt.store, RULES.SLOW_PROCESSING) is None

    took_long = await put_tx(
        rt, TxStatus.COMPLETED, created=now - 3 * HOUR, updated=now - timedelta(minutes=5)
    )
    still_open = await put_tx(rt, TxStatus.SENT, created=now - 2 * HOUR)
    await evaluator.tick()
    record = await load_alert(rt.store, RULES.SLOW_PROCESSING)
    assert record is not None
    assert record.alert.state == AlertState.FIRING
    assert [t.id for t in record.alert.transactions] == [took_long, still_open]

    await rt.store.transactions.update_one(
        {"_id": still_open}, {"$set": {"status": "CANCELLED", "updated_at": now}}
    )
    await rt.store.transactions.update_one(
        {"_id": took_long},
        {"$set": {"updated_at": now - 2 * HOUR}},  # out of the window
    )
    await evaluator.tick()
    record = await load_alert(rt.store, RULES.SLOW_PROCESSING)
    assert record is not None
    assert record.alert.state == AlertState.RESOLVED


async def put_slot(
    rt: Runtime, tx_id: str, fire_at: datetime, *, fired_at: datetime | None = None, late: float = 0
) -> None:
    slot = Slot(
        id=f"{tx_id}:{uuid.uuid4().hex[:6]}",
        transaction_id=tx_id,
        slot="20300101T0000Z",
        fire_at=fire_at,
        batches=[0],
        fired_at=fired_at,
        lateness_seconds=late if fired_at else None,
    )
    await rt.store.slots.insert_one(to_document(slot))


async def test_late_schedule_fired_late_or_not_fired(
    alerts_rt: Runtime, stack_info: StackInfo, db_name: str
) -> None:
    rt = alerts_rt
    now = datetime.now(UTC)
    evaluator = worker(rt, stack_info, db_name)
    minutes = [now - timedelta(minutes=m) for m in range(10)]
    # On time; a cancelled campaign's slot (never fires); a slot moved 10 min later by a
    # reschedule; a slot that fires in the future.
    on_time = await put_tx(rt, TxStatus.SENT, created=now - HOUR)
    await put_slot(rt, on_time, minutes[5], fired_at=minutes[5], late=0.4)
    cancelled = await put_tx(rt, TxStatus.CANCELLED, created=now - HOUR)
    await put_slot(rt, cancelled, minutes[5])
    moved = await put_tx(
        rt, TxStatus.SCHEDULED, created=now - HOUR, schedule=Schedule(slots=1, shift_seconds=600.0)
    )
    await put_slot(rt, moved, minutes[5])
    await put_slot(rt, moved, now + HOUR)
    await evaluator.tick()
    assert await load_alert(rt.store, RULES.LATE_SCHEDULE) is None

    fired_late = await put_tx(rt, TxStatus.SENT, created=now - HOUR)
    await put_slot(rt, fired_late, minutes[9], fired_at=minutes[6], late=180.0)
    await evaluator.tick()
    record = await load_alert(rt.store, RULES.LATE_SCHEDULE)
    assert record is not None
    assert record.alert.state == AlertState.FIRING
    assert [t.id for t in record.alert.transactions] == [fired_late]
    assert (record.alert.details["fired_late"], record.alert.details["not_fired"]) == (1, 0)

    never_fired = await put_tx(rt, TxStatus.SCHEDULED, created=now - HOUR)
    await put_slot(rt, never_fired, minutes[3])
    await evaluator.tick()
    record = await load_alert(rt.store, RULES.LATE_SCHEDULE)
    assert record is not None
    assert {t.id for t in record.alert.transactions} == {fired_late, never_fired}
    assert record.alert.details["not_fired"] == 1

    await rt.store.slots.update_many(
        {"transaction_id": {"$in": [fired_late, never_fired]}},
        {"$set": {"fired_at": now - 2 * HOUR, "lateness_seconds": 1.0}},
    )
    await evaluator.tick()
    record = await load_alert(rt.store, RULES.LATE_SCHEDULE)
    assert record is not None
    assert record.alert.state == AlertState.RESOLVED


async def test_two_evaluators_at_once_announce_each_change_once(
    alerts_rt: Runtime, stack_info: StackInfo, db_name: str, announcements: Announcements
) -> None:
    rt = alerts_rt
    now = datetime.now(UTC)
    stuck = await put_tx(rt, TxStatus.ACCEPT, created=now - 2 * HOUR)
    replicas = [worker(rt, stack_info, db_name) for _ in range(3)]

    changes = await asyncio.gather(*(w.tick() for w in replicas))
    assert sum(changes) == 1
    await rt.store.transactions.update_one({"_id": stuck}, {"$set": {"status": "FAILED"}})
    changes = await asyncio.gather(*(w.tick() for w in replicas))
    assert sum(changes) == 1
    assert states(await announcements.drain(), RULES.STUCK_PROCESSING) == ["firing", "resolved"]


async def test_the_senders_pause_is_recorded_beside_the_rules(
    alerts_rt: Runtime, announcements: Announcements
) -> None:
    rt = alerts_rt
    kv = await rt.broker.js.key_value(KV.SENDER.bucket)
    with suppress(KeyNotFoundError):
        await kv.purge("paused")
    first, second = (Pause(kv, rt.broker, rt.store, probe_seconds=60) for _ in range(2))

    await first.enter("AccountSendingPausedException")
    record = await load_alert(rt.store, "sending_paused")
    assert record is not None
    assert record.alert.state == AlertState.FIRING
    assert record.alert.reason == "AccountSendingPausedException"
    await asyncio.gather(first.clear(), second.clear())  # both replicas see it clear
    record = await load_alert(rt.store, "sending_paused")
    assert record is not None
    assert record.alert.state == AlertState.RESOLVED
    assert states(await announcements.drain(), "sending_paused") == ["firing", "resolved"]


async def test_an_evaluation_stays_cheap_on_thousands_of_transactions(
    alerts_rt: Runtime, stack_info: StackInfo, db_name: str
) -> None:
    """Thousands of transactions, a few of them matching: each query reads through an
    index, so a round costs a few dozen store commands and well under a second here."""
    rt = alerts_rt
    now = datetime.now(UTC)
    docs = []
    statuses = [TxStatus.COMPLETED] * 6 + [TxStatus.SENT, TxStatus.SCHEDULED, TxStatus.CANCELLED]
    for i in range(5000):
        created = now - timedelta(days=3) + timedelta(seconds=i * 50)
        status = statuses[i % len(statuses)]
        done = created + timedelta(minutes=20)
        tx = Transaction(
            id=f"tx{i:05}",
            tenant=f"t{i % 7}",
            status=status,
            template_id="tpl",
            source=S3Location(bucket="b", key="k"),
            counters={"total": 500, "delivered": 500},
            status_history=[StatusEntry(status=s, at=created) for s in TxStatus][:5],
            created_at=created,
            updated_at=done if status == TxStatus.COMPLETED else created,
        )
        docs.append(to_document(tx))
    await rt.store.transactions.insert_many(docs)
    evaluator = worker(rt, stack_info, db_name)

    await evaluator.tick()  # warm up
    before = rt.store.commands.count
    started = time.perf_counter()
    await evaluator.tick()
    took = time.perf_counter() - started
    commands = rt.store.commands.count - before
    assert commands < 40
    assert took < 2.0


# Recovery ---------------------------------------------------------------------------------


@pytest.fixture
async def s3(settings: ServiceSettings) -> AsyncIterator[S3Client]:
    async with AsyncExitStack() as exits:
        yield await open_s3(exits, settings)


def recipients(rows: int) -> bytes:
    lines = ["email,name", *(f"user{i}@example.org,N{i}" for i in range(rows))]
    lines[7] = "not-an-address,X"  # one row error
    return ("\r\n".join(lines) + "\r\n").encode()


async def accepted_file(
    rt: Runtime, s3: S3Client, bucket: str, body: bytes, *, age: timedelta
) -> Transaction:
    """What the gateway leaves behind -- the file, a template, a transaction in ACCEPT --
    ``age`` ago, and no message on ``email.tx.accepted`` (its publish was lost)."""
    at = stored_now() - age
    tx_id = uuid.uuid4().hex
    key = f"uploads/recover/{tx_id}.csv"
    await s3.put_object(Bucket=bucket, Key=key, Body=body)
    template = Template(
        id=uuid.uuid4().hex,
        tenant="t",
        name="n",
        subject="Hi",
        html="<p>{{ name }}</p>",
        placeholders=["name"],
        created_at=at,
    )
    await rt.store.templates.insert_one(to_document(template))
    tx = Transaction(
        id=tx_id,
        tenant="t",
        status=TxStatus.ACCEPT,
        template_id=template.id,
        source=S3Location(bucket=bucket, key=key),
        status_history=[StatusEntry(status=TxStatus.ACCEPT, at=at)],
        created_at=at,
        updated_at=at,
    )
    await rt.store.transactions.insert_one(to_document(tx))
    return tx


def ingest_runner(rt: Runtime, s3: S3Client, stack_info: StackInfo, db_name: str) -> ActorRunner:
    settings = load_settings(IngestSettings, settings_for(stack_info, db_name, BATCH_SIZE="50"))
    return ActorRunner(IngestActor(rt.store, rt.broker, s3, settings), rt.broker, rt.store)


async def ingested(rt: Runtime, tx_id: str) -> dict[str, Any]:
    tx = await load_transaction(rt.store, tx_id)
    messages = [m["_id"] async for m in rt.store.messages.find({"transaction_id": tx_id})]
    batches = [b["number"] async for b in rt.store.batches.find({"transaction_id": tx_id})]
    return {
        "status": tx.status,
        "counters": tx.counters,
        "batches": tx.batches,
        "messages": sorted(messages),
        "batch_docs": sorted(batches),
    }


async def accepted_on_stream(rt: Runtime) -> int:
    return (await rt.broker.js.stream_info("TX_ACCEPTED")).state.messages


ROWS = 600


async def test_a_transaction_left_in_accept_is_announced_again_and_ingested_once(
    alerts_rt: Runtime, s3: S3Client, stack_info: StackInfo, db_name: str
) -> None:
    rt = alerts_rt
    tx = await accepted_file(rt, s3, stack_info.s3_bucket, recipients(ROWS), age=HOUR)
    fresh = await accepted_file(rt, s3, stack_info.s3_bucket, recipients(10), age=timedelta(0))
    replicas = [worker(rt, stack_info, db_name, RECOVER_AFTER_SECONDS="60") for _ in range(2)]

    await asyncio.gather(*(w.tick() for w in replicas))
    assert await accepted_on_stream(rt) == 1  # one announcement, for the stuck one only
    assert (await load_transaction(rt.store, tx.id)).recoveries == 1
    assert (await load_transaction(rt.store, fresh.id)).recoveries == 0
    # Not again before recover_after_seconds has passed once more.
    await replicas[0].tick()
    assert await accepted_on_stream(rt) == 1

    await ingest_runner(rt, s3, stack_info, db_name).run(until_idle=True)

    after = await ingested(rt, tx.id)
    assert after["status"] == TxStatus.PROCESSING
    assert after["counters"]["total"] == ROWS - 1
    assert len(after["messages"]) == len(set(after["messages"])) == ROWS - 1
    assert after["batch_docs"] == list(range(after["batches"]))
    ingested_events = (await rt.broker.js.stream_info("TX_INGESTED")).state.messages
    assert ingested_events == 1


async def test_a_transaction_stuck_mid_file_resumes_to_the_same_result(
    alerts_rt: Runtime, s3: S3Client, stack_info: StackInfo, db_name: str
) -> None:
    rt = alerts_rt
    body = recipients(ROWS)
    reference = await accepted_file(rt, s3, stack_info.s3_bucket, body, age=timedelta(0))
    await rt.broker.publish(
        Subjects.TX_ACCEPTED,
        TxAccepted(transaction_id=reference.id),
        msg_id=f"{reference.id}:accepted",
    )
    runner = ingest_runner(rt, s3, stack_info, db_name)
    await runner.run(until_idle=True)
    expected = await ingested(rt, reference.id)
    assert expected["batches"] > 6

    # An ingest that died after batch 3 and half of batch 4, its redeliveries spent: what
    # it wrote is there, nothing after, no counters, and no message left on the stream.
    tx = await accepted_file(rt, s3, stack_info.s3_bucket, body, age=HOUR)
    await rt.broker.publish(
        Subjects.TX_ACCEPTED, TxAccepted(transaction_id=tx.id), msg_id=f"{tx.id}:acc"
    )
    await runner.run(until_idle=True)
    batch4 = await rt.store.batches.find_one({"_id": f"{tx.id}:4"})
    assert batch4 is not None
    half = [f"{tx.id}:{row}" for row in batch4["rows"][len(batch4["rows"]) // 2 :]]
    await rt.store.messages.delete_many({"_id": {"$in": half}})
    later = [f"{tx.id}:{n}" for n in range(5, expected["batches"])]
    await rt.store.batches.delete_many({"_id": {"$in": later}})
    await rt.store.messages.delete_many({"transaction_id": tx.id, "batch": {"$gte": 5}})
    await rt.store.slots.delete_many({"transaction_id": tx.id})
    long_ago = stored_now() - HOUR
    await rt.store.transactions.update_one(
        {"_id": tx.id},
        {
            "$unset": {"counters": "", "batches": "", "schedule": ""},
            "$set": {"updated_at": long_ago, "ingest_progress_at": long_ago},
        },
    )
    partial = await ingested(rt, tx.id)
    assert partial["status"] == TxStatus.PROCESSING
    assert "total" not in partial["counters"]

    await worker(rt, stack_info, db_name, RECOVER_AFTER_SECONDS="60").tick()
    await runner.run(until_idle=True)

    after = await ingested(rt, tx.id)
    same = {k: v for k, v in after.items() if k != "messages"}
    assert same == {k: v for k, v in expected.items() if k != "messages"}
    assert [m.split(":")[1] for m in after["messages"]] == [
        m.split(":")[1] for m in expected["messages"]
    ]


async def test_recovery_gives_up_after_its_attempts_and_the_batches_go(
    alerts_rt: Runtime,
    s3: S3Client,
    stack_info: StackInfo,
    db_name: str,
    announcements: Announcements,
) -> None:
    rt = alerts_rt
    tx = await accepted_file(rt, s3, stack_info.s3_bucket, recipients(ROWS), age=HOUR)
    runner = ingest_runner(rt, s3, stack_info, db_name)
    await rt.broker.publish(
        Subjects.TX_ACCEPTED, TxAccepted(transaction_id=tx.id), msg_id=f"{tx.id}:acc"
    )
    await runner.run(until_idle=True)
    # Stuck mid-file (as above), and every recovery attempt already spent.
    await rt.store.transactions.update_one(
        {"_id": tx.id},
        {
            "$unset": {"counters": "", "batches": "", "schedule": ""},
            "$set": {
                "updated_at": stored_now() - HOUR,
                "ingest_progress_at": stored_now() - HOUR,
                "recoveries": 2,
            },
        },
    )
    written = len((await ingested(rt, tx.id))["batch_docs"])
    assert written > 0

    evaluator = worker(
        rt, stack_info, db_name, RECOVER_AFTER_SECONDS="60", RECOVER_MAX_ATTEMPTS="2"
    )
    await evaluator.tick()

    failed = await load_transaction(rt.store, tx.id)
    assert failed.status == TxStatus.FAILED
    assert failed.failure is not None
    assert failed.failure["code"] == NOT_RECOVERED
    assert failed.batches == written
    record = await load_alert(rt.store, RULES.STUCK_NOT_RECOVERED)
    assert record is not None
    assert record.alert.state == AlertState.FIRING
    assert [t.id for t in record.alert.transactions] == [tx.id]
    assert states(await announcements.drain(), RULES.STUCK_NOT_RECOVERED) == ["firing"]

    await runner.run(until_idle=True)  # ingest removes what the failed file left
    after = await ingested(rt, tx.id)
    assert (after["messages"], after["batch_docs"], after["batches"]) == ([], [], 0)
