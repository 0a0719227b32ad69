"""The SQS poller against moto's SQS and the real broker: unwrap, publish once, delete."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest
import structlog
import structlog.testing

from services.tracker.events_actor import SesEventsActor
from services.tracker.sqs import (
    QueuedMessage,
    SesEventQueue,
    SqsPoller,
    batch_msg_id,
)
from shared.actor import ActorRunner
from shared.documents import Message, from_document
from shared.events import SesEvents, decoder
from shared.service import Runtime
from shared.sns import unwrap_ses_event
from shared.status import MessageStatus as M
from tests.tracker.tracker_builders import insert, sent_transaction, ses_event

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-events"


def sns_envelope(event: dict[str, Any]) -> str:
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": TOPIC,
            "Message": json.dumps(event),
            "Timestamp": "2026-01-01T00:00:00.000Z",
            "SignatureVersion": "1",
            "Signature": "EXAMPLE",
            "SigningCertURL": "https://sns.us-east-1.amazonaws.com/cert.pem",
            "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
        }
    )


@pytest.fixture
async def queue_url(sqs: SQSClient) -> str:
    created = await sqs.create_queue(
        QueueName=f"ses-events-{uuid.uuid4().hex[:8]}", Attributes={"VisibilityTimeout": "30"}
    )
    return created["QueueUrl"]


async def enqueue(sqs: SQSClient, url: str, bodies: list[str]) -> None:
    """Send ``bodies`` to the queue, ten per SendMessageBatch (SQS's limit)."""
    for start in range(0, len(bodies), 10):
        await sqs.send_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "MessageBody": body}
                for i, body in enumerate(bodies[start : start + 10])
            ],
        )


async def queued(sqs: SQSClient, url: str) -> int:
    attrs = await sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )
    values = attrs["Attributes"]
    return int(values["ApproximateNumberOfMessages"]) + int(
        values["ApproximateNumberOfMessagesNotVisible"]
    )


async def stream_batches(rt: Runtime) -> list[SesEvents]:
    info = await rt.broker.js.stream_info("SES_EVENTS")
    batches = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        if info.state.messages == 0:
            break
        raw = await rt.broker.js.get_msg("SES_EVENTS", seq)
        assert raw.data is not None
        batches.append(decoder(SesEvents).decode(raw.data))
    return batches


def test_unwrap_ses_event() -> None:
    event = ses_event("Delivery", "tx", 2)
    assert unwrap_ses_event(sns_envelope(event)) == event
    assert unwrap_ses_event(json.dumps(event)) == event  # raw message delivery
    assert unwrap_ses_event("not json") is None
    assert unwrap_ses_event('"a string"') is None
    assert unwrap_ses_event(json.dumps({"Type": "Notification", "Message": "not json"})) is None
    assert unwrap_ses_event(json.dumps({"Type": "SubscriptionConfirmation", "Token": "x"})) is None


def test_batch_msg_id_ignores_order() -> None:
    a = QueuedMessage(message_id="a", receipt_handle="ra", body="")
    b = QueuedMessage(message_id="b", receipt_handle="rb", body="")
    assert batch_msg_id([a, b]) == batch_msg_id([b, a])
    assert batch_msg_id([a]) != batch_msg_id([a, b])


async def test_poller_unwraps_publishes_once_and_deletes(
    tracker: Runtime, sqs: SQSClient, queue_url: str
) -> None:
    rt = tracker
    tx, messages = sent_transaction(3)
    await insert(rt.store, tx, messages)
    bodies = [
        sns_envelope(ses_event("Delivery", tx.id, 2)),
        sns_envelope(ses_event("Bounce", tx.id, 3)),
        json.dumps(ses_event("Delivery", tx.id, 4)),  # raw message delivery
        "this is not JSON",
    ]
    await sqs.send_message_batch(
        QueueUrl=queue_url,
        Entries=[{"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies)],
    )
    queue = SesEventQueue(sqs, queue_url, wait_seconds=1)
    poller = SqsPoller(queue, rt.broker)
    received: list[QueuedMessage] = []
    deadline = time.monotonic() + 10
    while len(received) < len(bodies) and time.monotonic() < deadline:
        received += await queue.receive()
    assert len(received) == len(bodies)

    assert await poller.forward(received) == 3
    # The same batch again (its delete was lost, say): the stream keeps one copy.
    assert await poller.forward(list(reversed(received))) == 3
    batches = await stream_batches(rt)
    assert len(batches) == 1
    kinds = sorted((e["eventType"], e["mail"]["tags"]["row"][0]) for e in batches[0].events)
    assert kinds == [("Bounce", "3"), ("Delivery", "2"), ("Delivery", "4")]
    # Only the unreadable body is left in the queue.
    assert await queued(sqs, queue_url) == 1

    await ActorRunner(SesEventsActor(rt.store, rt.broker), rt.broker, rt.store).run(until_idle=True)
    cursor = rt.store.messages.find({"transaction_id": tx.id})
    found = {m.row: m.status async for m in (from_document(r, Message) async for r in cursor)}
    assert found == {2: M.DELIVERED, 3: M.BOUNCED, 4: M.DELIVERED}


async def test_a_full_queue_is_gathered_into_one_batch(
    tracker: Runtime, sqs: SQSClient, queue_url: str
) -> None:
    rt = tracker
    bodies = [sns_envelope(ses_event("Delivery", "tx", row)) for row in range(2, 37)]
    await enqueue(sqs, queue_url, bodies)
    queue = SesEventQueue(sqs, queue_url, wait_seconds=1)
    poller = SqsPoller(queue, rt.broker)
    first = await queue.receive()
    assert len(first) == 10  # full: more are waiting
    # SQS refuses a DeleteMessageBatch of more than ten entries; moto takes any number, so
    # the client's own requests are watched.
    deletes: list[int] = []

    def watch(params: dict[str, Any], **_: Any) -> None:
        deletes.append(len(params["Entries"]))

    sqs.meta.events.register("provide-client-params.sqs.DeleteMessageBatch", watch)
    try:
        assert await poller.forward(await poller.gather(first)) == len(bodies)
    finally:
        sqs.meta.events.unregister("provide-client-params.sqs.DeleteMessageBatch", watch)
    batches = await stream_batches(rt)
    assert [len(b.events) for b in batches] == [len(bodies)]
    assert await queued(sqs, queue_url) == 0
    assert sorted(deletes) == [5, 10, 10, 10]


async def test_a_gather_stops_at_half_a_megabyte(
    tracker: Runtime, sqs: SQSClient, queue_url: str
) -> None:
    # SES events with their mail headers run to kilobytes: a backlog is published in
    # pieces well under NATS's 1 MB payload limit, not all at once.
    rt = tracker
    bodies = []
    for row in range(2, 82):
        event = ses_event("Delivery", "tx", row)
        event["mail"]["headers"] = [{"name": "X-Padding", "value": "x" * 9_000}]
        bodies.append(sns_envelope(event))
    await enqueue(sqs, queue_url, bodies)
    queue = SesEventQueue(sqs, queue_url, wait_seconds=1)
    poller = SqsPoller(queue, rt.broker)

    first = await poller.gather(await queue.receive())
    rest = await poller.gather(await queue.receive())

    size = sum(len(m.body.encode()) for m in first)
    assert 512 * 1024 <= size < 512 * 1024 + 10 * len(bodies[0])
    assert len(first) + len(rest) == len(bodies)
    assert await poller.forward(first) + await poller.forward(rest) == len(bodies)
    assert [len(b.events) for b in await stream_batches(rt)] == [len(first), len(rest)]


async def test_a_gather_stops_at_its_deadline(
    tracker: Runtime, sqs: SQSClient, queue_url: str
) -> None:
    # Receives may be slow (moto's take seconds with thousands queued): what came in is
    # published when the gathering time is up, whatever still waits.
    bodies = [sns_envelope(ses_event("Delivery", "tx", row)) for row in range(2, 32)]
    await enqueue(sqs, queue_url, bodies)
    queue = SesEventQueue(sqs, queue_url, wait_seconds=1)
    first = await queue.receive()
    assert len(first) == 10  # full: more are waiting

    assert await SqsPoller(queue, tracker.broker, gather_seconds=0).gather(first) == first
    assert len(await SqsPoller(queue, tracker.broker).gather(first)) == len(bodies)


async def test_poller_runs_until_stopped(tracker: Runtime, sqs: SQSClient, queue_url: str) -> None:
    rt = tracker
    poller = SqsPoller(SesEventQueue(sqs, queue_url, wait_seconds=10), rt.broker)
    task = asyncio.create_task(poller.run())
    await sqs.send_message(
        QueueUrl=queue_url, MessageBody=sns_envelope(ses_event("Delivery", "tx", 2))
    )
    for _ in range(150):
        if await stream_batches(rt):
            break
        await asyncio.sleep(0.1)
    assert len(await stream_batches(rt)) == 1
    # Now in a 10 s long poll: stop cuts it short.
    await asyncio.sleep(0.3)
    started = time.monotonic()
    poller.stop()
    await asyncio.wait_for(task, 5)
    assert time.monotonic() - started < 1.0
    assert await queued(sqs, queue_url) == 0


async def test_poller_backs_off_on_aws_errors(tracker: Runtime, sqs: SQSClient) -> None:
    rt = tracker
    missing = f"{sqs.meta.endpoint_url}/123456789012/no-such-queue"
    poller = SqsPoller(SesEventQueue(sqs, missing, wait_seconds=1), rt.broker)
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(poller.run())
        await asyncio.sleep(1.0)
        assert not task.done()  # the error became a backoff; the loop lives on
        poller.stop()
        await asyncio.wait_for(task, 5)
    failures = [entry for entry in logs if entry["event"] == "sqs poll failed; backing off"]
    assert failures
    assert "UpstreamUnavailable" in failures[0]["error"]
    assert failures[0]["delay"] == 0.5
