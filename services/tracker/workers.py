"""The tracker's workers, built from a ``Runtime``: five actors, the alert worker and, when
a queue is set, the SQS poller. Clients they share (one HTTP client, one SQS client) are
opened here, in the runtime's exit stack, and passed in."""

from __future__ import annotations

from datetime import timedelta

from services.tracker.alerts import AlertWorker
from services.tracker.callback_pump import CallbackPumpActor
from services.tracker.callback_retry import RetryPolicy
from services.tracker.callbacks import CallbackActor
from services.tracker.delivery_timeout import ExpiryActor, SentActor
from services.tracker.events_actor import SesEventsActor
from services.tracker.sqs import SesEventQueue, SqsPoller
from shared.actor import ActorRunner
from shared.aws import open_sqs
from shared.safe_http import parse_networks, safe_http_client
from shared.service import Runtime, Worker
from shared.settings import TrackerSettings

__all__ = ["build_workers"]


async def build_workers(runtime: Runtime, settings: TrackerSettings) -> list[Worker]:
    # Callback receivers on public addresses only, unless allowed (shared/safe_http.py).
    http = await runtime.exits.enter_async_context(
        safe_http_client(
            allowed=parse_networks(settings.callback_allowed_networks),
            timeout=settings.callback_timeout_seconds,
        )
    )
    store, broker = runtime.store, runtime.broker
    timeout = settings.delivery_timeout_seconds
    workers: list[Worker] = [
        ActorRunner(SesEventsActor(store, broker), broker, store, concurrency=settings.concurrency),
        ActorRunner(
            SentActor(store, broker, delivery_timeout=timedelta(seconds=timeout)),
            broker,
            store,
            concurrency=settings.concurrency,
        ),
        ActorRunner(ExpiryActor(store, broker), broker, store, concurrency=settings.concurrency),
        # Status changes into the callbacks outbox; the pump delivers them, in order per
        # transaction, many transactions at once.
        ActorRunner(CallbackActor(store, broker), broker, store, concurrency=settings.concurrency),
        ActorRunner(
            CallbackPumpActor(
                store,
                broker,
                http,
                RetryPolicy.from_settings(settings),
                timeout=settings.callback_timeout_seconds,
            ),
            broker,
            store,
            concurrency=settings.callback_concurrency,
        ),
    ]
    # The alert rules and the recovery of stuck transactions, every alert_interval_seconds.
    workers.append(AlertWorker(store, broker, settings))
    if settings.sqs_queue_url:
        sqs = await open_sqs(runtime.exits, settings)
        queue = SesEventQueue(sqs, settings.sqs_queue_url, wait_seconds=settings.sqs_wait_seconds)
        workers.append(SqsPoller(queue, broker))
    return workers
