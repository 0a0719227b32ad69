"""The tracker's workers, built from a ``Runtime``: three actors and, when a queue is set,
the SQS poller. Clients they share (one HTTP client, one SQS client) are opened here, in the
runtime's exit stack, and passed in."""

from __future__ import annotations

import httpx

from services.tracker.callbacks import CallbackActor
from services.tracker.completion import SentActor
from services.tracker.events_actor import SesEventsActor
from services.tracker.sqs import SesEventQueue, SqsPoller
from shared.actor import ActorRunner
from shared.aws import open_sqs
from shared.service import Runtime, Worker
from shared.settings import TrackerSettings

__all__ = ["build_workers"]


async def build_workers(runtime: Runtime, settings: TrackerSettings) -> list[Worker]:
    http = await runtime.exits.enter_async_context(
        httpx.AsyncClient(timeout=settings.callback_timeout_seconds, follow_redirects=False)
    )
    store, broker = runtime.store, runtime.broker
    workers: list[Worker] = [
        ActorRunner(SesEventsActor(store, broker), broker, store, concurrency=settings.concurrency),
        ActorRunner(SentActor(store, broker), broker, store, concurrency=settings.concurrency),
        # The consumer lets one message out at a time: callbacks keep their order.
        ActorRunner(CallbackActor(store, http), broker, store, concurrency=1),
    ]
    if settings.sqs_queue_url:
        sqs = await open_sqs(runtime.exits, settings)
        queue = SesEventQueue(sqs, settings.sqs_queue_url, wait_seconds=settings.sqs_wait_seconds)
        workers.append(SqsPoller(queue, broker))
    return workers
