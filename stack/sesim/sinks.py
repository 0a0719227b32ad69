"""Where SES events go: an SQS queue (SNS-wrapped), NATS ``email.ses.events``, or nowhere.

A sink delivers one batch and returns the events it could not deliver (the dispatcher retries
those); raising means none were delivered. Retrying a batch must be safe: the NATS sink reuses
the batch id as ``Nats-Msg-Id`` so the server drops a repeat; SQS is at-least-once anyway.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Protocol

import nats
from aiobotocore.session import get_session

from shared.events import SES_EVENTS_GATHER_SECONDS, SesEvents, encode
from shared.topology import Subjects
from stack.sesim.events import Event, sns_envelope

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient
    from types_aiobotocore_sqs import SQSClient

__all__ = ["EventSink", "NatsSink", "NullSink", "SqsSink"]


class EventSink(Protocol):
    max_batch: int  # events per delivery at most
    gather_seconds: float  # how long a batch may gather while events keep coming (Dispatcher)

    async def deliver(self, batch_id: str, events: list[Event]) -> list[Event]: ...

    async def aclose(self) -> None: ...


class NullSink:
    max_batch = 1000
    gather_seconds = 0.0

    async def deliver(self, batch_id: str, events: list[Event]) -> list[Event]:
        return []

    async def aclose(self) -> None:
        return None


_SQS_BATCH = 10  # SendMessageBatch takes at most ten entries


class SqsSink:
    """One SNS Notification per event, ten per SendMessageBatch, the batches sent concurrently."""

    max_batch = 100
    gather_seconds = 0.0  # the tracker's poller gathers what it receives from the queue

    def __init__(self, queue_url: str, *, endpoint_url: str | None, region: str, topic_arn: str):
        self._queue_url = queue_url
        self._endpoint_url = endpoint_url
        self._region = region
        self._topic_arn = topic_arn
        self._stack = AsyncExitStack()
        self._client: SQSClient | None = None

    async def _sqs(self) -> SQSClient:
        if self._client is None:
            client = get_session().create_client(
                "sqs", endpoint_url=self._endpoint_url, region_name=self._region
            )
            self._client = await self._stack.enter_async_context(client)
        return self._client

    async def deliver(self, batch_id: str, events: list[Event]) -> list[Event]:
        sqs = await self._sqs()
        chunks = [events[i : i + _SQS_BATCH] for i in range(0, len(events), _SQS_BATCH)]
        results = await asyncio.gather(
            *(self._send_chunk(sqs, chunk) for chunk in chunks), return_exceptions=True
        )
        failed: list[Event] = []
        for chunk, result in zip(chunks, results, strict=True):
            if isinstance(result, BaseException):
                failed.extend(chunk)
            else:
                failed.extend(result)
        return failed

    async def _send_chunk(self, sqs: SQSClient, chunk: list[Event]) -> list[Event]:
        answer = await sqs.send_message_batch(
            QueueUrl=self._queue_url,
            Entries=[
                {"Id": str(i), "MessageBody": sns_envelope(event, self._topic_arn)}
                for i, event in enumerate(chunk)
            ],
        )
        return [chunk[int(failure["Id"])] for failure in answer.get("Failed", [])]

    async def aclose(self) -> None:
        await self._stack.aclose()
        self._client = None


_HEADERS_ROOM = 1024  # the server's payload limit counts the headers too


def _payloads(events: list[Event], limit: int) -> list[bytes]:
    """``SesEvents`` of at most ``limit`` bytes (an event alone may be more), in order.

    The same events give the same payloads, so a retried batch repeats its message ids.
    """
    payload = encode(SesEvents(events=events))
    if len(payload) <= limit or len(events) == 1:
        return [payload]
    half = len(events) // 2
    return [*_payloads(events[:half], limit), *_payloads(events[half:], limit)]


class NatsSink:
    """A JetStream publish of ``SesEvents`` to ``email.ses.events``, deduplicated by batch id.

    It stands in for SNS -> SQS -> the tracker's poller, and gathers as the poller does: for
    up to ``SES_EVENTS_GATHER_SECONDS``, up to about what the poller's 512 KiB of SNS bodies
    hold (1.1-1.4 KB an event here, 1.7 KB in its envelope). A batch larger than the server
    takes in one message (big tags or subjects) goes in halves.
    """

    max_batch = 300
    gather_seconds = SES_EVENTS_GATHER_SECONDS

    def __init__(self, url: str, *, publish_timeout: float = 5.0) -> None:
        self._url = url
        self._timeout = publish_timeout
        self._nc: NatsClient | None = None

    async def _connect(self) -> NatsClient:
        if self._nc is None or self._nc.is_closed:
            self._nc = await nats.connect(
                self._url,
                name="ses-simulator",
                connect_timeout=2,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
            )
        return self._nc

    async def deliver(self, batch_id: str, events: list[Event]) -> list[Event]:
        nc = await self._connect()
        js = nc.jetstream(timeout=self._timeout)
        for n, part in enumerate(_payloads(events, nc.max_payload - _HEADERS_ROOM)):
            await js.publish(
                Subjects.SES_EVENTS, part, headers={"Nats-Msg-Id": f"sesim:{batch_id}:{n}"}
            )
        return []

    async def aclose(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.drain()
        self._nc = None
