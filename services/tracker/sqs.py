"""The SQS poller: SES events from the queue SNS fills, onto ``email.ses.events``.

    receive (long poll, up to 10)  ->  unwrap each body  ->  publish ONE SesEvents  ->  delete

A full receive means more are waiting: the poller then receives again at once (no wait), up
to ``_GATHER_BYTES`` of bodies or for ``SES_EVENTS_GATHER_SECONDS``, and publishes them
together. Under load that is one stream message and one tracker batch per few hundred events instead
of per ten; a trickle is forwarded as it comes, without waiting for company.

A body is an SNS Notification whose ``Message`` is the SES event as a JSON string, or the SES
event itself when the subscription has raw message delivery on. The batch's publish carries a
``Nats-Msg-Id`` made from its SQS message ids, so a batch received again (its delete was lost,
its visibility ran out) is stored once; the SQS messages are deleted only after the stream
acknowledged the publish. A body that holds no SES event is logged and left in the queue, for
the queue's redrive policy to deal with.

AWS errors become ``UpstreamUnavailable`` at this edge; the loop backs off and keeps polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import msgspec
import structlog
from botocore.exceptions import BotoCoreError, ClientError

from shared.broker import Broker
from shared.errors import RetryableError, UpstreamUnavailable
from shared.events import SES_EVENTS_GATHER_SECONDS, SesEvents
from shared.sns import unwrap_ses_event
from shared.topology import Subjects

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

__all__ = ["QueuedMessage", "SesEventQueue", "SqsPoller", "batch_msg_id"]

log = structlog.get_logger("tracker.sqs")

_MAX_MESSAGES: Final = 10  # SQS's limit per ReceiveMessage and per DeleteMessageBatch
# Bodies gathered into one publish while receives come back full: a few hundred SES events,
# well under NATS's 1 MB payload limit (an event published is smaller than its SNS body).
_GATHER_BYTES: Final = 512 * 1024
_BACKOFF: Final = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


class QueuedMessage(msgspec.Struct, frozen=True, kw_only=True):
    message_id: str
    receipt_handle: str
    body: str


class SesEventQueue:
    """The SQS queue, behind our error tree."""

    def __init__(self, sqs: SQSClient, queue_url: str, *, wait_seconds: int) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.wait_seconds = wait_seconds

    async def receive(self, *, wait: bool = True) -> list[QueuedMessage]:
        """Up to ten messages; a long poll, or with ``wait=False`` only what is there."""
        try:
            answer = await self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=_MAX_MESSAGES,
                WaitTimeSeconds=self.wait_seconds if wait else 0,
            )
        except (BotoCoreError, ClientError) as e:
            raise UpstreamUnavailable(f"SQS ReceiveMessage failed: {e!r}") from e
        return [
            QueuedMessage(
                message_id=m["MessageId"], receipt_handle=m["ReceiptHandle"], body=m["Body"]
            )
            for m in answer.get("Messages", [])
            if "MessageId" in m and "ReceiptHandle" in m and "Body" in m
        ]

    async def delete(self, messages: Sequence[QueuedMessage]) -> int:
        """Delete the messages; how many SQS refused (they will come back, harmlessly).

        Ten per DeleteMessageBatch, SQS's limit (moto does not enforce it; SQS answers more
        with TooManyEntriesInBatchRequest), the calls made together.
        """
        groups = [messages[i : i + _MAX_MESSAGES] for i in range(0, len(messages), _MAX_MESSAGES)]
        refused = await asyncio.gather(*(self._delete_batch(group) for group in groups))
        return sum(refused)

    async def _delete_batch(self, messages: Sequence[QueuedMessage]) -> int:
        try:
            answer = await self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m.receipt_handle}
                    for i, m in enumerate(messages)
                ],
            )
        except (BotoCoreError, ClientError) as e:
            raise UpstreamUnavailable(f"SQS DeleteMessageBatch failed: {e!r}") from e
        return len(answer.get("Failed", []))


def _body_bytes(messages: Sequence[QueuedMessage]) -> int:
    return sum(len(m.body.encode()) for m in messages)


def batch_msg_id(messages: Sequence[QueuedMessage]) -> str:
    """The same SQS messages give the same id, in whatever order they come."""
    digest = hashlib.sha256("\n".join(sorted(m.message_id for m in messages)).encode())
    return f"sqs:{digest.hexdigest()[:40]}"


class SqsPoller:
    """A Worker: polls until stopped; ``stop`` also cuts a long poll short."""

    def __init__(
        self,
        queue: SesEventQueue,
        broker: Broker,
        *,
        gather_seconds: float = SES_EVENTS_GATHER_SECONDS,
    ) -> None:
        self.queue = queue
        self.broker = broker
        self.gather_seconds = gather_seconds
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                received = await self._receive_unless_stopped()
                if received is None:
                    break
                await self.forward(await self.gather(received))
            except RetryableError as e:
                delay = _BACKOFF[min(failures, len(_BACKOFF) - 1)]
                failures += 1
                log.warning("sqs poll failed; backing off", error=repr(e), delay=delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
            else:
                failures = 0

    async def gather(self, received: list[QueuedMessage]) -> list[QueuedMessage]:
        """``received`` and, while receives come back full, what is waiting behind it."""
        last = received
        size = _body_bytes(received)
        deadline = time.monotonic() + self.gather_seconds
        while len(last) == _MAX_MESSAGES and size < _GATHER_BYTES and time.monotonic() < deadline:
            last = await self.queue.receive(wait=False)
            received = [*received, *last]
            size += _body_bytes(last)
        return received

    async def poll_once(self) -> int:
        """One receive, publish and delete; how many SES events went out."""
        return await self.forward(await self.queue.receive())

    async def forward(self, received: Sequence[QueuedMessage]) -> int:
        """Publish the received messages' events as one batch, then delete them."""
        if not received:
            return 0
        events: list[dict[str, Any]] = []
        usable: list[QueuedMessage] = []
        for message in received:
            event = unwrap_ses_event(message.body)
            if event is None:
                log.error(
                    "sqs message holds no SES event; left in the queue",
                    sqs_message_id=message.message_id,
                    body=message.body[:200],
                )
                continue
            events.append(event)
            usable.append(message)
        if not usable:
            return 0
        msg_id = batch_msg_id(usable)
        await self.broker.publish(Subjects.SES_EVENTS, SesEvents(events=events), msg_id=msg_id)
        refused = await self.queue.delete(usable)
        log.info(
            "sqs batch",
            received=len(received),
            events=len(events),
            msg_id=msg_id,
            delete_refused=refused,
        )
        return len(events)

    async def _receive_unless_stopped(self) -> list[QueuedMessage] | None:
        """A receive that ``stop`` cuts short (None): a long poll holds nothing we would lose.

        Publishing and deleting are never cut short: they finish before the loop ends.
        """
        receive = asyncio.ensure_future(self.queue.receive())
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({receive, stopped}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            receive.cancel()
            raise
        finally:
            stopped.cancel()
        if not receive.done():
            receive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receive
            return None
        return receive.result()
