"""Callbacks: every status change of a transaction POSTed to its callback URL.

    POST <callback_url>   {"transaction_id", "event_type": "status_change",
                           "old_status", "new_status", "timestamp"}   (RFC 3339, UTC)

    2xx                          delivered
    any other answer, a network  ``UpstreamUnavailable``: the runner redelivers with backoff
    error or a timeout           and dead-letters after ``max_deliver``

Every attempt is kept in ``callbacks`` as a ``CallbackAttempt`` with ``_id``
``<transaction>:<new status>:<attempt>``, attempt counting from 1. The attempt number comes
from the attempts already recorded (one ``_id: {$in}`` read), and a change whose callback
was already answered with a 2xx is not POSTed again when its event is redelivered.
The consumer has one message in flight at a time, so callbacks go out in the order of the
changes, a retried one holding back those after it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

import httpx
import msgspec
import structlog

from shared.actor import Actor
from shared.documents import CallbackAttempt, from_document, to_document
from shared.errors import UpstreamUnavailable
from shared.events import TxStatusChanged
from shared.status import TxStatus
from shared.store import Store
from shared.topology import CONSUMERS

__all__ = ["CallbackActor", "CallbackPayload", "attempt_id"]

log = structlog.get_logger("tracker.callbacks")

_EVENT_TYPE: Final = "status_change"
_encoder = msgspec.json.Encoder()


class CallbackPayload(msgspec.Struct, frozen=True, kw_only=True):
    transaction_id: str
    event_type: str = _EVENT_TYPE
    old_status: TxStatus
    new_status: TxStatus
    # msgspec writes an aware UTC datetime as RFC 3339 with a ``Z``.
    timestamp: datetime


def attempt_id(transaction_id: str, new_status: str, attempt: int) -> str:
    return f"{transaction_id}:{new_status}:{attempt}"


class CallbackActor(Actor[TxStatusChanged]):
    spec = CONSUMERS.TRACKER_CALLBACKS
    event_type = TxStatusChanged

    def __init__(self, store: Store, http: httpx.AsyncClient) -> None:
        self.store = store
        self.http = http

    async def handle(self, event: TxStatusChanged) -> None:
        if event.old_status is None:
            return  # the transaction's creation: the client knows of it from its own request
        raw = await self.store.transactions.find_one(
            {"_id": event.transaction_id}, {"callback_url": 1}
        )
        url = raw.get("callback_url") if raw is not None else None
        if not isinstance(url, str) or not url:
            return
        earlier = await self._earlier_attempts(event)
        if any(_succeeded(a) for a in earlier):
            return
        attempt = max((a.attempt for a in earlier), default=0) + 1
        payload = CallbackPayload(
            transaction_id=event.transaction_id,
            old_status=event.old_status,
            new_status=event.new_status,
            timestamp=event.timestamp.astimezone(UTC),
        )
        body = _encoder.encode(payload)
        status_code: int | None = None
        error: str | None = None
        try:
            response = await self.http.post(
                url, content=body, headers={"content-type": "application/json"}
            )
            status_code = response.status_code
        except httpx.HTTPError as e:
            error = repr(e)
        await self._record(event, url, attempt, payload, status_code, error)
        bound = log.bind(
            transaction_id=event.transaction_id,
            new_status=event.new_status,
            attempt=attempt,
            status_code=status_code,
        )
        if status_code is not None and 200 <= status_code < 300:
            bound.info("callback delivered")
            return
        bound.warning("callback failed", error=error)
        raise UpstreamUnavailable(f"callback to {url} failed: {error or f'HTTP {status_code}'}")

    async def _earlier_attempts(self, event: TxStatusChanged) -> list[CallbackAttempt]:
        ids = [
            attempt_id(event.transaction_id, event.new_status, n)
            for n in range(1, self.spec.max_deliver + 1)
        ]
        return [
            from_document(raw, CallbackAttempt)
            async for raw in self.store.callbacks.find({"_id": {"$in": ids}})
        ]

    async def _record(
        self,
        event: TxStatusChanged,
        url: str,
        attempt: int,
        payload: CallbackPayload,
        status_code: int | None,
        error: str | None,
    ) -> None:
        document = CallbackAttempt(
            id=attempt_id(event.transaction_id, event.new_status, attempt),
            transaction_id=event.transaction_id,
            url=url,
            event=_EVENT_TYPE,
            attempt=attempt,
            payload=msgspec.to_builtins(payload),
            status_code=status_code,
            error=error,
            at=datetime.now(UTC),
        )
        await self.store.callbacks.update_one(
            {"_id": document.id}, {"$setOnInsert": to_document(document)}, upsert=True
        )


def _succeeded(attempt: CallbackAttempt) -> bool:
    return attempt.status_code is not None and 200 <= attempt.status_code < 300
