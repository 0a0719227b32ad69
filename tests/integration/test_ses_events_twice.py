"""The proof that SES events count once: 1,000 events sent twice, shuffled, through both
paths (the SQS queue and the SNS webhook), in both SES formats, end in the same statuses,
counters, recorded events and suppressions as the same events sent once, in order.

Two transactions get the same events: A once, in order, straight onto the stream; B every
event twice, one copy through moto's SQS (as an SNS envelope or raw message delivery) and
the other through the gateway's webhook, signed as SNS signs, the second copy of a
delivery, bounce or complaint as an identity notification: all 2,000 in random order,
while the tracker runs.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import httpx
import msgspec
import pytest

from services.gateway.app import create_app
from services.gateway.deps import open_deps
from services.tracker.events_actor import SesEventsActor
from services.tracker.sqs import SesEventQueue, SqsPoller
from shared.actor import ActorRunner
from shared.documents import Message, Transaction, from_document
from shared.events import SesEvents
from shared.service import Runtime
from shared.settings import GatewaySettings, load_settings
from shared.status import MessageStatus as M
from shared.topology import Subjects
from stack.launcher import StackInfo
from tests.conftest import settings_for
from tests.sns_host import HOST_PATTERN, TOPIC, FakeSns, notification, serve_fake_sns
from tests.tracker.tracker_builders import insert, payload, sent_transaction, ses_event

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

EVENTS: Final = 1000

# What one mail can go through, in order: (kind, bounce type).
_SCRIPTS: Final = (
    (("Send", None), ("Delivery", None)),
    (("Send", None), ("Delivery", None), ("Complaint", None)),
    (("Send", None), ("DeliveryDelay", None), ("Bounce", "Permanent")),
    (("Send", None), ("Bounce", "Transient"), ("Delivery", None)),
    (("Send", None), ("Delivery", None), ("Bounce", "Permanent")),
    (("Send", None), ("Reject", None)),
    (("Send", None), ("DeliveryDelay", None)),
)
_NOTIFICATIONS: Final = {"Delivery", "Bounce", "Complaint"}


def plan(rng: random.Random) -> list[tuple[int, str, str | None, int]]:
    """EVENTS events as (row, kind, bounce type, seconds after the start), per message in
    its script's order."""
    events: list[tuple[int, str, str | None, int]] = []
    row = 2
    while len(events) < EVENTS:
        for step, (kind, bounce) in enumerate(rng.choice(_SCRIPTS)):
            events.append((row, kind, bounce, step * 60 + rng.randrange(30)))
        row += 1
    return events[:EVENTS]


def configuration_set_event(
    tx: Transaction, row: int, kind: str, bounce: str | None, at: datetime
) -> dict[str, Any]:
    return ses_event(kind, tx.id, row, at=at, bounce_type=bounce or "Permanent")


def identity_notification(event: dict[str, Any]) -> dict[str, Any]:
    """The same event as an identity notification: no tags, found by its SES message id."""
    kind = event["eventType"]
    notice = payload(f"notification_{kind.lower()}")
    notice["mail"]["messageId"] = event["mail"]["messageId"]
    notice[kind.lower()] = event[kind.lower()]
    return notice


def sns_envelope(event: dict[str, Any]) -> str:
    """An SQS body as SNS writes it (the queue's poller does not check signatures)."""
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": TOPIC,
            "Message": json.dumps(event),
            "Timestamp": "2026-01-01T00:00:00.000Z",
        }
    )


@pytest.fixture(scope="module")
def sns_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeSns]:
    with serve_fake_sns(tmp_path_factory.mktemp("sns")) as sns:
        yield sns


@pytest.fixture
async def webhook(
    stack_info: StackInfo, db_name: str, sns_host: FakeSns
) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway app on the test's loop, taking the fake SNS host for SNS."""
    settings = msgspec.structs.replace(
        load_settings(GatewaySettings, settings_for(stack_info, db_name)),
        sns_topic_arns=TOPIC,
        sns_cert_host_pattern=HOST_PATTERN,
        sns_ca_file=sns_host.ca_file,
    )
    async with AsyncExitStack() as exits:
        deps = await open_deps(exits, settings)
        app = create_app(settings, deps)
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client


async def outcome(rt: Runtime, tx_id: str) -> tuple[dict[str, int], dict[int, Any]]:
    """The transaction's non-zero counters; per row its status and recorded events."""
    raw = await rt.store.transactions.find_one({"_id": tx_id})
    counters = {k: v for k, v in from_document(raw, Transaction).counters.items() if v}
    rows: dict[int, Any] = {}
    async for doc in rt.store.messages.find({"transaction_id": tx_id}):
        message = from_document(doc, Message)
        events = sorted(
            (e["kind"], e.get("bounce_type"), e.get("timestamp")) for e in message.events
        )
        rows[message.row] = (message.status, events)
    return counters, rows


async def suppressed(rt: Runtime, tenant: str) -> list[str]:
    return sorted([doc["email"] async for doc in rt.store.suppressions.find({"tenant": tenant})])


async def test_events_twice_shuffled_through_both_paths_count_once(
    runtime: Runtime, sqs: SQSClient, webhook: httpx.AsyncClient, sns_host: FakeSns
) -> None:
    rt = runtime
    for stream in ("SES_EVENTS", "TX_STATUS", "MSG_STATUS"):
        await rt.broker.js.purge_stream(stream)
    rng = random.Random(20261128)
    events = plan(rng)
    rows = max(row for row, *_ in events) - 1
    once, messages_a = sent_transaction(rows)
    twice, messages_b = sent_transaction(rows)
    # Another tenant, so the suppressions of the two can be told apart.
    twice = msgspec.structs.replace(twice, tenant="tenant-2")
    messages_b = [msgspec.structs.replace(m, tenant="tenant-2") for m in messages_b]
    await insert(rt.store, once, messages_a)
    await insert(rt.store, twice, messages_b)
    start = datetime.now(UTC) - timedelta(hours=1)

    # A: once, in order, straight onto the stream, ten to a batch as SQS would.
    in_order = sorted(events, key=lambda e: (e[3], e[0]))
    for i in range(0, len(in_order), 10):
        batch = [
            configuration_set_event(once, row, kind, bounce, start + timedelta(seconds=s))
            for row, kind, bounce, s in in_order[i : i + 10]
        ]
        await rt.broker.publish(
            Subjects.SES_EVENTS, SesEvents(events=batch), msg_id=uuid.uuid4().hex
        )

    # B: twice, through both paths, shuffled.
    copies: list[tuple[str, dict[str, Any]]] = []
    for row, kind, bounce, s in events:
        event = configuration_set_event(twice, row, kind, bounce, start + timedelta(seconds=s))
        other = identity_notification(event) if kind in _NOTIFICATIONS else event
        paths = ["sqs", "sns"]
        rng.shuffle(paths)
        copies += [(paths[0], event), (paths[1], other)]
    rng.shuffle(copies)
    queue_url = (
        await sqs.create_queue(
            QueueName=f"ses-events-{uuid.uuid4().hex[:8]}", Attributes={"VisibilityTimeout": "30"}
        )
    )["QueueUrl"]
    poller = SqsPoller(SesEventQueue(sqs, queue_url, wait_seconds=1), rt.broker)
    tracker = ActorRunner(SesEventsActor(rt.store, rt.broker), rt.broker, rt.store, concurrency=8)
    running = [asyncio.create_task(poller.run()), asyncio.create_task(tracker.run())]
    pending: list[str] = []
    via_sqs = 0
    for path, event in copies:
        if path == "sns":
            body = json.dumps(notification(sns_host, event, version=rng.choice("12")))
            answer = await webhook.post(
                "/api/v1/webhooks/ses", content=body, headers={"Content-Type": "text/plain"}
            )
            assert answer.status_code == 200, answer.text
            continue
        pending.append(sns_envelope(event) if rng.random() < 0.5 else json.dumps(event))
        if len(pending) == 10:
            await sqs.send_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(pending)],
            )
            via_sqs += len(pending)
            pending = []
    if pending:
        await sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(pending)],
        )
        via_sqs += len(pending)
    for _ in range(600):
        attrs = await sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
        left = sum(int(v) for v in attrs["Attributes"].values())
        if left == 0:
            break
        await asyncio.sleep(0.2)
    assert left == 0
    poller.stop()
    tracker.stop()
    await asyncio.gather(*running)
    await ActorRunner(SesEventsActor(rt.store, rt.broker), rt.broker, rt.store).run(until_idle=True)

    counters_a, rows_a = await outcome(rt, once.id)
    counters_b, rows_b = await outcome(rt, twice.id)
    assert via_sqs == EVENTS
    assert counters_b == counters_a
    assert rows_b == rows_a
    # The counters are those of the messages themselves.
    recount = Counter(status.lower() for status, _ in rows_a.values())
    assert {k: v for k, v in counters_a.items() if k != "total"} == dict(recount)
    assert counters_a["total"] == rows
    # Every kind of outcome is in the run, and the events are all on record.
    assert {M(s) for s, _ in rows_a.values()} >= {
        M.DELIVERED,
        M.COMPLAINED,
        M.BOUNCED,
        M.FAILED,
        M.SENT,
    }
    assert sum(len(e) for _, e in rows_a.values()) == EVENTS
    suppressed_a = await suppressed(rt, once.tenant)
    assert suppressed_a
    assert await suppressed(rt, twice.tenant) == suppressed_a
