"""The simulator's parts without a server: mailbox outcomes, event shapes, rate, dispatch."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from shared.events import SesEvents, encode
from stack.sesim.dispatcher import Dispatcher
from stack.sesim.events import (
    Event,
    Mail,
    new_ses_message_id,
    outcome_events,
    send_event,
    sns_envelope,
)
from stack.sesim.mailbox import Outcome, outcome_for
from stack.sesim.sinks import _payloads
from stack.sesim.throttle import TokenBucket


@pytest.mark.parametrize(
    ("address", "outcome"),
    [
        ("success@simulator.amazonses.com", Outcome.DELIVERY),
        ("bounce@simulator.amazonses.com", Outcome.BOUNCE),
        ("Bounce+tx1-row7@Simulator.AmazonSES.com", Outcome.BOUNCE),
        ("complaint@simulator.amazonses.com", Outcome.COMPLAINT),
        ("ooto@simulator.amazonses.com", Outcome.DELIVERY),
        ("suppressionlist+x@simulator.amazonses.com", Outcome.SUPPRESSED),
        ("Someone <bounce@simulator.amazonses.com>", Outcome.BOUNCE),
        ("bounce@example.com", Outcome.DELIVERY),
        ("anyone@simulator.amazonses.com", Outcome.DELIVERY),
    ],
)
def test_mailbox_simulator_outcomes(address: str, outcome: Outcome) -> None:
    assert outcome_for(address) is outcome


def _mail(*recipients: str) -> Mail:
    now = datetime.now(UTC)
    return Mail(
        ses_message_id=new_ses_message_id(now),
        timestamp=now,
        source="news@example.com",
        destination=list(recipients),
        subject="Hello",
        tags={"message_id": "tx1:7", "transaction_id": "tx1"},
        configuration_set="email-platform",
        account_id="123456789012",
        region="us-east-1",
    )


def test_events_carry_the_mail_object_and_tags_as_lists() -> None:
    mail = _mail("complaint@simulator.amazonses.com")
    send = send_event(mail)
    assert send["eventType"] == "Send"
    assert send["send"] == {}
    assert send["mail"]["messageId"] == mail.ses_message_id
    assert send["mail"]["destination"] == ["complaint@simulator.amazonses.com"]
    assert send["mail"]["tags"]["message_id"] == ["tx1:7"]
    assert send["mail"]["tags"]["ses:configuration-set"] == ["email-platform"]
    later = mail.timestamp + timedelta(seconds=1)
    kinds = [e["eventType"] for e in outcome_events(mail, later)]
    assert kinds == ["Delivery", "Complaint"]


def test_bounce_kinds() -> None:
    mail = _mail("bounce@simulator.amazonses.com", "suppressionlist@simulator.amazonses.com")
    bounces = [e["bounce"] for e in outcome_events(mail, mail.timestamp)]
    assert [(b["bounceType"], b["bounceSubType"]) for b in bounces] == [
        ("Permanent", "General"),
        ("Permanent", "OnAccountSuppressionList"),
    ]
    assert bounces[0]["bouncedRecipients"][0]["emailAddress"] == "bounce@simulator.amazonses.com"


def test_sns_envelope_wraps_the_event_as_a_string() -> None:
    event = send_event(_mail("success@simulator.amazonses.com"))
    envelope = json.loads(sns_envelope(event, "arn:aws:sns:eu-west-1:123456789012:ses"))
    assert envelope["Type"] == "Notification"
    assert envelope["TopicArn"] == "arn:aws:sns:eu-west-1:123456789012:ses"
    assert json.loads(envelope["Message"]) == event
    assert envelope["SigningCertURL"].startswith("https://sns.eu-west-1.amazonaws.com/")


def test_token_bucket_allows_the_rate_and_refills() -> None:
    now = [0.0]
    bucket = TokenBucket(5, clock=lambda: now[0])
    assert [bucket.try_take() for _ in range(6)] == [True] * 5 + [False]
    now[0] += 0.2  # one token's worth
    assert bucket.try_take()
    assert not bucket.try_take()


class _FlakySink:
    """Fails its first ``failures`` deliveries, then takes everything."""

    def __init__(
        self, failures: int = 0, *, max_batch: int = 100, gather_seconds: float = 0.0
    ) -> None:
        self.failures = failures
        self.max_batch = max_batch
        self.gather_seconds = gather_seconds
        self.calls: list[tuple[str, int]] = []
        self.events: list[Event] = []

    async def deliver(self, batch_id: str, events: list[Event]) -> list[Event]:
        self.calls.append((batch_id, len(events)))
        if self.failures:
            self.failures -= 1
            raise ConnectionError("sink down")
        self.events.extend(events)
        return []

    async def aclose(self) -> None:
        return None


async def test_dispatcher_batches_and_retries_with_the_same_batch_id() -> None:
    sink = _FlakySink(failures=2)
    dispatcher = Dispatcher(sink, backoff_first=0.01)
    task = asyncio.create_task(dispatcher.run())
    try:
        dispatcher.emit([{"n": 1}, {"n": 2}])
        dispatcher.emit([{"n": 3}], delay=0.01)
        assert await dispatcher.drain(within=5)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert [e["n"] for e in sink.events] == [1, 2, 3]
    assert len(sink.calls) == 3
    assert len({batch_id for batch_id, _ in sink.calls}) == 1  # retried, not re-batched
    assert dispatcher.pending == 0


async def _deliveries(sink: _FlakySink, emit: Callable[[Dispatcher], Awaitable[None]]) -> list[int]:
    """The sizes of the deliveries that carry what ``emit`` emits, in order."""
    dispatcher = Dispatcher(sink)
    task = asyncio.create_task(dispatcher.run())
    try:
        await emit(dispatcher)
        assert await dispatcher.drain(within=10)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert [e["n"] for e in sink.events] == list(range(len(sink.events)))
    return [size for _, size in sink.calls]


def _flow(events: int) -> Callable[[Dispatcher], Awaitable[None]]:
    """``events`` events, 20 every 10 ms (2,000 a second: a campaign at 1,000 sends a second)."""

    async def emit(dispatcher: Dispatcher) -> None:
        for n in range(0, events, 20):
            dispatcher.emit([{"n": i} for i in range(n, min(n + 20, events))])
            await asyncio.sleep(0.01)

    return emit


async def test_a_flow_of_events_gathers_up_to_the_sinks_batch() -> None:
    # One linger (50 ms) of this flow holds about 100 events: gathering fills the batch.
    sizes = await _deliveries(_FlakySink(max_batch=300, gather_seconds=10), _flow(900))
    assert sizes[:2] == [300, 300]
    assert sum(sizes) == 900


async def test_a_sink_without_gathering_takes_one_linger_of_the_flow() -> None:
    sizes = await _deliveries(_FlakySink(max_batch=300, gather_seconds=0), _flow(900))
    assert max(sizes) < 300
    assert sum(sizes) == 900


async def test_gathering_stops_after_the_sinks_gather_seconds() -> None:
    # 1.5 s of flow, batches without a size limit: cut by the 0.3 s of gathering.
    sizes = await _deliveries(_FlakySink(max_batch=10**6, gather_seconds=0.3), _flow(3000))
    assert len(sizes) >= 3
    assert max(sizes) < 3000


async def test_a_trickle_is_not_held_for_company() -> None:
    async def trickle(dispatcher: Dispatcher) -> None:
        for n in range(3):
            dispatcher.emit([{"n": n}])
            await asyncio.sleep(0.1)

    # Were the batch held while gathering is allowed (an hour), the drain would time out.
    assert await _deliveries(_FlakySink(max_batch=300, gather_seconds=3600), trickle) == [1, 1, 1]


def test_nats_payloads_split_in_halves_under_the_limit_and_repeat() -> None:
    events: list[Event] = [{"n": n, "subject": "x" * 1000} for n in range(10)]
    whole = len(encode(SesEvents(events=events)))
    parts = _payloads(events, whole // 3)
    decoded = [msgspec.json.decode(part, type=SesEvents).events for part in parts]
    assert [e["n"] for part in decoded for e in part] == list(range(10))
    assert all(len(part) <= whole // 3 for part in parts)
    assert len(parts) == 4  # 10 -> 5 + 5 -> (2 + 3) + (2 + 3)
    assert _payloads(events, whole // 3) == parts  # a retry repeats the same message ids
    assert _payloads(events, whole) == [encode(SesEvents(events=events))]
