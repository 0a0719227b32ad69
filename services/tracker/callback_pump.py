"""Callbacks, part two: the pump delivers a transaction's callbacks from the outbox, in the
order of its changes, each until it is delivered, skipped or dead.

On ``email.callback.due`` (``CallbackDue``): look at the transaction's callbacks (one read by
``_id``) and take the first one still pending — the head. Later ones wait for it, so a
transaction's callbacks arrive in status order; other transactions' are pumped by other
work items at the same time (the consumer has ``callback_concurrency`` in flight).

    head due, not held    claim it (a conditional update sets ``lease_until``: two pumps
                          never send the same one), POST it, record the try, next
    head not due yet      a wake-up at its ``next_attempt_at``, then stop
    head held by a pump   a wake-up when the lease ends, then stop (the holder carries on
                          with the later ones; the wake-up covers a holder that died)
    nothing pending       stop

A wake-up is a JetStream message schedule: ``CallbackDue`` on ``email.callback.wake.<tx>``
with ``Nats-Schedule: @at <time>``, fired by the server onto ``email.callback.due``; one per
transaction, a newer one replacing the last. Nothing polls.

    2xx                       delivered
    410 Gone                  skipped; the URL is disabled for the tenant: its later
                              callbacks are recorded as skipped, not sent, until the tenant
                              rotates its webhook secret (shared/webhook_secrets.py)
    any other answer, no      failed: retried after the next delay of ``RetryPolicy`` (or the
    answer in time, refused   answer's Retry-After), or dead after the last one: kept in the
    connection                dead letters (kind "callback") and passed over
    (``UnsafeAddress`` too)

A URL that resolves to a refused address (``shared.safe_http.UnsafeAddress``) fails like
an unreachable receiver and is retried on the same schedule: its DNS may be put right.
Every try is appended to the callback's ``attempts``: the audit trail.

Crash anywhere, nothing is lost: the work item is acknowledged only when the pump stops,
so it comes back, and the lease of a callback whose try was cut short runs out.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import httpx
import structlog

from services.tracker.callback_retry import RetryPolicy, retry_after_seconds
from shared.actor import Actor
from shared.broker import Broker
from shared.callback_outbox import MAX_SEQ, announce_due, load_deliveries
from shared.clock import stored_now, to_stored
from shared.documents import CallbackAttempt, CallbackDelivery, DeadLetter, to_document
from shared.events import CallbackDue
from shared.metrics import CALLBACK_TRIES
from shared.records import keep_dead_letter
from shared.schedule import schedule_stamp
from shared.status import CallbackState
from shared.store import Store
from shared.topology import CONSUMERS, Subjects
from shared.webhook_secrets import disable_url, ensure_secret, sign, signing_secrets

__all__ = ["CallbackPumpActor"]

log = structlog.get_logger("tracker.callback_pump")

_NEVER: Final = datetime(1970, 1, 1, tzinfo=UTC)
# Beyond the try's own time limit: the store writes around it.
_LEASE_MARGIN: Final = 20.0
# Claims one run of the pump makes at most: the transaction's callbacks, a few times over
# (a claim another pump wins costs a look more). Past it, a fresh work item carries on.
_MAX_STEPS: Final = 4 * MAX_SEQ
_USER_AGENT: Final = "email-platform-callbacks/1"


class CallbackPumpActor(Actor[CallbackDue]):
    spec = CONSUMERS.TRACKER_CALLBACK_DUE
    event_type = CallbackDue

    def __init__(
        self,
        store: Store,
        broker: Broker,
        http: httpx.AsyncClient,
        policy: RetryPolicy,
        *,
        timeout: float,
    ) -> None:
        self.store = store
        self.broker = broker
        self.http = http
        self.policy = policy
        self.timeout = timeout
        self.lease = timedelta(seconds=timeout + _LEASE_MARGIN)

    async def handle(self, event: CallbackDue) -> None:
        for _ in range(_MAX_STEPS):
            deliveries = await load_deliveries(self.store, event.transaction_id)
            head = next((d for d in deliveries if d.state == CallbackState.PENDING), None)
            if head is None:
                return
            now = stored_now()
            wait_until = max(head.next_attempt_at, head.lease_until)
            if wait_until > now:
                await self._wake(head, wait_until)
                return
            lease_until = to_stored(now + self.lease)
            claimed = await self.store.callbacks.update_one(
                {
                    "_id": head.id,
                    "state": CallbackState.PENDING,
                    "next_attempt_at": {"$lte": now},
                    "lease_until": {"$lte": now},
                },
                {"$set": {"lease_until": lease_until}},
            )
            if claimed.matched_count == 1:
                await self._deliver(head, lease_until)
            # else another pump claimed it, or it changed: look again.
        await announce_due(self.broker, event.transaction_id)

    async def _wake(self, head: CallbackDelivery, at: datetime) -> None:
        """Have the server announce the transaction due again at ``at``."""
        await self.broker.publish(
            Subjects.callback_wake(head.transaction_id),
            CallbackDue(transaction_id=head.transaction_id),
            # Never dropped as a repeat: the newest wake-up must replace the one waiting.
            msg_id=f"{head.id}:wake:{uuid.uuid4().hex}",
            headers={
                "Nats-Schedule": f"@at {schedule_stamp(at)}",
                "Nats-Schedule-Target": Subjects.CALLBACK_DUE,
            },
        )

    async def _deliver(self, delivery: CallbackDelivery, lease_until: datetime) -> None:
        stored = await ensure_secret(self.store, delivery.tenant)
        now = stored_now()
        bound = log.bind(callback_id=delivery.id, new_status=delivery.new_status)
        if delivery.url in stored.disabled_urls:
            attempt = CallbackAttempt(
                at=now,
                skipped=True,
                error="not sent: this callback URL answered 410 Gone before",
                replay=delivery.replay_requested,
            )
            await self._settle(delivery, lease_until, attempt, {"state": CallbackState.SKIPPED})
            CALLBACK_TRIES.labels("skipped").inc()
            bound.info("callback skipped: URL disabled")
            return
        # webhook-timestamp is whole seconds, and the signature covers that exact value.
        sent_at = datetime.fromtimestamp(int(now.timestamp()), UTC)
        headers = {
            "content-type": "application/json",
            "user-agent": _USER_AGENT,
            "webhook-id": delivery.id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": sign(
                signing_secrets(stored, now), delivery.id, sent_at, delivery.body
            ),
        }
        status_code, error, retry_after, seconds = await self._post(delivery, headers)
        attempt = CallbackAttempt(
            at=now,
            status_code=status_code,
            error=error,
            duration_seconds=round(seconds, 3),
            replay=delivery.replay_requested,
        )
        bound = bound.bind(
            status_code=status_code, seconds=round(seconds, 3), tries=1 + len(delivery.attempts)
        )
        if status_code is not None and 200 <= status_code < 300:
            await self._settle(delivery, lease_until, attempt, {"state": CallbackState.DELIVERED})
            CALLBACK_TRIES.labels("delivered").inc()
            bound.info("callback delivered")
            return
        if status_code == httpx.codes.GONE:
            await disable_url(self.store, delivery.tenant, delivery.url)
            await self._settle(delivery, lease_until, attempt, {"state": CallbackState.SKIPPED})
            CALLBACK_TRIES.labels("gone").inc()
            bound.warning("callback URL gone: disabled for the tenant")
            return
        failures = delivery.failures + 1
        delay = self.policy.delay(failures, retry_after)
        if delay is None:
            await self._dead_letter(delivery, attempt)
            await self._settle(
                delivery, lease_until, attempt, {"state": CallbackState.DEAD, "failures": failures}
            )
            CALLBACK_TRIES.labels("dead").inc()
            bound.error("callback dead: every retry failed", error=error)
            return
        retry_at = now + timedelta(seconds=delay)
        await self._settle(
            delivery,
            lease_until,
            attempt,
            {"failures": failures, "next_attempt_at": retry_at, "lease_until": _NEVER},
        )
        # The next look at the transaction (``handle``'s) finds it not due: its wake-up.
        CALLBACK_TRIES.labels("failed").inc()
        bound.warning("callback failed; will retry", error=error, retry_in=round(delay, 3))

    async def _post(
        self, delivery: CallbackDelivery, headers: dict[str, str]
    ) -> tuple[int | None, str | None, float | None, float]:
        """The receiver's status code, or the error instead; its Retry-After in seconds;
        how long it took. The answer's body is never read."""
        started = time.monotonic()
        status_code: int | None = None
        error: str | None = None
        retry_after: float | None = None
        try:
            # The whole exchange within the limit (httpx's applies to each phase apart).
            async with (
                asyncio.timeout(self.timeout),
                self.http.stream(
                    "POST", delivery.url, content=delivery.body.encode("utf-8"), headers=headers
                ) as response,
            ):
                status_code = response.status_code
                retry_after = retry_after_seconds(response.headers.get("retry-after"), stored_now())
        except TimeoutError:
            error = f"no answer within {self.timeout:g} s"
        except (httpx.HTTPError, httpx.InvalidURL) as e:
            error = f"{type(e).__name__}: {e}"
        return status_code, error, retry_after, time.monotonic() - started

    async def _settle(
        self,
        delivery: CallbackDelivery,
        lease_until: datetime,
        attempt: CallbackAttempt,
        fields: dict[str, Any],
    ) -> None:
        """Record the try and its outcome, if our lease still holds the callback; a pump
        whose lease ran out (another may have taken over) records the try alone."""
        pushed = {"$push": {"attempts": to_document(attempt)}}
        now = stored_now()
        settled = await self.store.callbacks.update_one(
            {"_id": delivery.id, "lease_until": lease_until},
            {
                "$set": {
                    "lease_until": _NEVER,
                    "replay_requested": False,
                    "updated_at": now,
                    **fields,
                },
                **pushed,
            },
        )
        if settled.matched_count == 0:
            await self.store.callbacks.update_one({"_id": delivery.id}, pushed)

    async def _dead_letter(self, delivery: CallbackDelivery, attempt: CallbackAttempt) -> None:
        tries = len(delivery.attempts) + 1
        error = attempt.error or f"HTTP {attempt.status_code}"
        letter = DeadLetter(
            id=f"callback:{delivery.id}:{tries}",
            service=CONSUMERS.TRACKER_CALLBACK_DUE.service,
            subject=Subjects.CALLBACK_DUE,
            stream_seq=0,
            deliveries=tries,
            payload=delivery.body,
            error=f"callback to {delivery.url} failed {tries} times; last: {error}",
            at=attempt.at,
            kind="callback",
            transaction_id=delivery.transaction_id,
            message_id=delivery.id,
        )
        await keep_dead_letter(self.store, letter)
