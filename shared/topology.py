"""The whole JetStream topology as code (ARCHITECTURE §3): streams, subjects, consumers.

``ensure_topology`` creates or updates everything idempotently; every service calls it at
start-up, so whichever starts first builds it and the rest find it in place.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import msgspec
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError

__all__ = [
    "CONSUMERS",
    "KV",
    "STREAMS",
    "ConsumerSpec",
    "Subjects",
    "all_consumers",
    "ensure_topology",
]


class Subjects:
    TX_ACCEPTED = "email.tx.accepted"
    TX_INGESTED = "email.tx.ingested"
    TX_DUE = "email.tx.due"
    # A client's cancel or reschedule, for the scheduler to carry out.
    TX_CONTROL = "email.tx.control"
    SEND_BATCH = "email.send.batch"
    SES_EVENTS = "email.ses.events"
    TX_STATUS = "email.tx.status"  # .<STATUS>
    MSG_STATUS = "email.msg.status"  # .<STATUS>: message outcomes, a batch per message
    # A SENT transaction's delivery timeout: its schedule waits on email.expiry.<tx>, then
    # fires onto TX_EXPIRE.
    EXPIRY = "email.expiry"  # .<transaction>
    TX_EXPIRE = "email.tx.expire"
    SCHEDULE = "email.schedule"  # .<transaction>.<slot>
    DLQ = "email.dlq"  # .<service>
    # A transaction's callbacks to deliver: the tracker's pump delivers its next ones. A
    # retry's wake-up waits as a schedule on email.callback.wake.<tx>, then fires onto it.
    CALLBACK_DUE = "email.callback.due"
    CALLBACK_WAKE = "email.callback.wake"  # .<transaction>
    ALERTS = "email.alerts"  # .<rule>

    @staticmethod
    def alert(rule: str) -> str:
        return f"{Subjects.ALERTS}.{rule}"

    @staticmethod
    def tx_status(status: str) -> str:
        return f"{Subjects.TX_STATUS}.{status}"

    @staticmethod
    def msg_status(status: str) -> str:
        return f"{Subjects.MSG_STATUS}.{status}"

    @staticmethod
    def expiry(transaction_id: str) -> str:
        return f"{Subjects.EXPIRY}.{transaction_id}"

    @staticmethod
    def schedule(transaction_id: str, slot: str) -> str:
        return f"{Subjects.SCHEDULE}.{transaction_id}.{slot}"

    @staticmethod
    def callback_wake(transaction_id: str) -> str:
        return f"{Subjects.CALLBACK_WAKE}.{transaction_id}"

    @staticmethod
    def dlq(service: str) -> str:
        return f"{Subjects.DLQ}.{service}"


_DAY = timedelta(days=1).total_seconds()
# Seconds in which a second publish with the same Nats-Msg-Id is dropped.
_DUPLICATE_WINDOW = 120


def _work(name: str, *subjects: str, schedules: bool = False) -> StreamConfig:
    """A work stream: a message is gone once its consumer acknowledged it."""
    return StreamConfig(
        name=name,
        subjects=list(subjects),
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        allow_msg_schedules=schedules or None,
        duplicate_window=_DUPLICATE_WINDOW,
    )


def _kept(name: str, *subjects: str, days: int = 30, schedules: bool = False) -> StreamConfig:
    """A stream that keeps its messages ``days`` days, for replay, the oldest going first."""
    return StreamConfig(
        name=name,
        subjects=list(subjects),
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        allow_msg_schedules=schedules or None,
        max_age=days * _DAY,
        discard=DiscardPolicy.OLD,
        duplicate_window=_DUPLICATE_WINDOW,
    )


STREAMS: tuple[StreamConfig, ...] = (
    _work("TX_ACCEPTED", Subjects.TX_ACCEPTED),
    _work("TX_INGESTED", Subjects.TX_INGESTED),
    # Schedules and what they fire live in one stream: a schedule's target subject must
    # belong to the stream that holds the schedule. Kept a week past the furthest send time.
    _kept(
        "SCHEDULES",
        f"{Subjects.SCHEDULE}.>",
        Subjects.TX_DUE,
        f"{Subjects.EXPIRY}.>",
        Subjects.TX_EXPIRE,
        days=30 + 7,
        schedules=True,
    ),
    _work("TX_CONTROL", Subjects.TX_CONTROL),
    _work("SEND_BATCH", Subjects.SEND_BATCH),
    _work("SES_EVENTS", Subjects.SES_EVENTS),
    # External systems subscribe to transaction status changes here.
    _kept("TX_STATUS", f"{Subjects.TX_STATUS}.>"),
    # Message outcomes (DELIVERED, BOUNCED, ...), one event per batch of messages.
    _kept("MSG_STATUS", f"{Subjects.MSG_STATUS}.>"),
    # Alerts as they fire and resolve, kept for whoever watches them.
    _kept("ALERTS", f"{Subjects.ALERTS}.>"),
    # Callback work and its wake-ups, in one stream: a schedule's target subject must belong
    # to the stream that holds the schedule. A pumped item is gone once acknowledged; a
    # schedule (one per transaction: a new one replaces the last) is removed by the server
    # when it fires.
    _work("CALLBACKS", Subjects.CALLBACK_DUE, f"{Subjects.CALLBACK_WAKE}.>", schedules=True),
    _kept("DLQ", f"{Subjects.DLQ}.>"),
)


class ConsumerSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A durable pull consumer shared by every replica of the service that owns it."""

    stream: str
    durable: str
    filter_subject: str
    service: str
    ack_wait: float = 30.0
    max_deliver: int = 10
    max_ack_pending: int = 1000
    # Delays before redelivery after a nak, by delivery number; the last repeats.
    backoff: tuple[float, ...] = (1.0, 2.0, 5.0, 15.0, 30.0, 60.0)

    def config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.durable,
            filter_subject=self.filter_subject,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self.ack_wait,
            max_deliver=self.max_deliver,
            max_ack_pending=self.max_ack_pending,
        )


class CONSUMERS:
    """Every durable consumer, by the actor that owns it."""

    INGEST = ConsumerSpec(
        stream="TX_ACCEPTED",
        durable="ingest",
        filter_subject=Subjects.TX_ACCEPTED,
        service="ingest",
        # Short, so the file of an ingest that died is taken up again soon; a live one
        # holds it however long the file is with in-progress acks every ack_wait / 3.
        ack_wait=15.0,
    )
    SCHEDULER_INGESTED = ConsumerSpec(
        stream="TX_INGESTED",
        durable="scheduler",
        filter_subject=Subjects.TX_INGESTED,
        service="scheduler",
    )
    SCHEDULER_DUE = ConsumerSpec(
        stream="SCHEDULES",
        durable="scheduler-due",
        filter_subject=Subjects.TX_DUE,
        service="scheduler",
    )
    SCHEDULER_CONTROL = ConsumerSpec(
        stream="TX_CONTROL",
        durable="scheduler-control",
        filter_subject=Subjects.TX_CONTROL,
        service="scheduler",
        # One request at a time: a reschedule's purge and publishes never interleave with
        # another's (services/scheduler/control.py). Requests are rare and short.
        max_ack_pending=1,
    )
    SENDER = ConsumerSpec(
        stream="SEND_BATCH",
        durable="sender",
        filter_subject=Subjects.SEND_BATCH,
        service="sender",
        # Short, so the batch of a sender that died is taken up again soon; a live one
        # holds it with in-progress acks every ack_wait / 3.
        ack_wait=15.0,
        max_ack_pending=64,
        # A batch comes back while messages of a crashed attempt wait to be resolved (see
        # services/sender/sending.py); each message's own retries are bounded separately,
        # so the batch may come back many times, spaced out.
        max_deliver=200,
        backoff=(2.0, 5.0, 10.0, 20.0, 30.0),
    )
    TRACKER_EVENTS = ConsumerSpec(
        stream="SES_EVENTS",
        durable="tracker",
        filter_subject=Subjects.SES_EVENTS,
        service="tracker",
    )
    # Completion is checked when a transaction reaches SENT (its last events may have
    # arrived before it did).
    TRACKER_SENT = ConsumerSpec(
        stream="TX_STATUS",
        durable="tracker-sent",
        filter_subject=Subjects.tx_status("SENT"),
        service="tracker",
    )
    # A SENT transaction's delivery timeout is over: its messages without an outcome expire.
    TRACKER_EXPIRE = ConsumerSpec(
        stream="SCHEDULES",
        durable="tracker-expire",
        filter_subject=Subjects.TX_EXPIRE,
        service="tracker",
    )
    # Each status change into the callbacks outbox (services/tracker/callbacks.py). The
    # order comes from the transaction's status history, not from this consumer's, so it
    # may take many at once.
    TRACKER_CALLBACKS = ConsumerSpec(
        stream="TX_STATUS",
        durable="tracker-callbacks",
        filter_subject=f"{Subjects.TX_STATUS}.>",
        service="tracker",
    )
    # A transaction's callbacks to deliver (services/tracker/callback_pump.py). A delivery's
    # own retries live in its outbox document, not here: this backoff only covers the store
    # or NATS being away, for up to a day before the item is dead-lettered.
    TRACKER_CALLBACK_DUE = ConsumerSpec(
        stream="CALLBACKS",
        durable="tracker-callback-due",
        filter_subject=Subjects.CALLBACK_DUE,
        service="tracker",
        max_deliver=1500,
        backoff=(1.0, 2.0, 5.0, 15.0, 30.0, 60.0),
    )


class KV:
    """Key-value buckets: small shared state of a service's replicas."""

    # The senders' shared rate ceiling (key ``next``) and account-wide pause (``paused``).
    SENDER = KeyValueConfig(bucket="sender", history=1, storage=StorageType.FILE)


def all_consumers() -> list[ConsumerSpec]:
    return [spec for spec in vars(CONSUMERS).values() if isinstance(spec, ConsumerSpec)]


async def ensure_topology(js: JetStreamContext, replicas: int = 1) -> None:
    """``replicas``: each stream's and bucket's copies (``nats_stream_replicas``); raising
    it on a cluster scales existing streams up in place."""
    for config in STREAMS:
        stream = dataclasses.replace(config, num_replicas=replicas)
        try:
            await js.update_stream(stream)
        except NotFoundError:
            try:
                await js.add_stream(stream)
            except BadRequestError:
                # Another service created it between our two calls.
                await js.update_stream(stream)
    for spec in all_consumers():
        await js.add_consumer(spec.stream, spec.config())
    await js.create_key_value(dataclasses.replace(KV.SENDER, replicas=replicas))
