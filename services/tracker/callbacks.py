"""Callbacks, part one: every status change of a transaction with a callback URL becomes a
``CallbackDelivery`` in the outbox (``callbacks``), and the pump is told.

    POST <callback_url>
    webhook-id: <transaction>:<seq>          the same on every try and replay
    webhook-timestamp: <unix seconds>         of this try
    webhook-signature: v1,<base64>[ v1,<base64>]   (Standard Webhooks; two while rotating)

    {"transaction_id", "event_type": "status_change", "old_status", "new_status",
     "timestamp",                                         (RFC 3339, UTC, of the change)
     "progress": {"total_messages", "processed_messages", "percentage", "counts": {...}},
     "stats": {...} on COMPLETED (the transaction's final stats), else null}

``seq`` is the change's index in the transaction's ``status_history``: that, not the order
events arrive in, orders a transaction's callbacks. Two changes made by two services in
quick succession may be announced in either order, so each event records the callback of
every change in the history (``insert_new``: those already there stay as they were); once a
change is in the outbox, so is every earlier one. This actor only writes and announces;
``callback_pump`` delivers. The body is fixed here, once: ``progress`` is the transaction's
as this change is recorded.

Crash anywhere: the event comes back, the writes find their documents there, and the
announcement's ``Nats-Msg-Id`` (transaction, history length) lets the stream drop a repeat.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

import msgspec
import structlog

from shared.actor import Actor
from shared.broker import Broker
from shared.callback_outbox import announce_due, delivery_id
from shared.clock import stored_now
from shared.documents import CallbackDelivery, Transaction, from_document, to_document
from shared.events import TxStatusChanged
from shared.progress import compute_progress, message_counts
from shared.status import CallbackState, TxStatus
from shared.store import Store, insert_new
from shared.topology import CONSUMERS

__all__ = [
    "EVENT_TYPE",
    "CallbackActor",
    "CallbackPayload",
    "CallbackProgress",
    "deliveries_of",
]

log = structlog.get_logger("tracker.callbacks")

EVENT_TYPE: Final = "status_change"
_NEVER: Final = datetime(1970, 1, 1, tzinfo=UTC)
_encoder = msgspec.json.Encoder()


class CallbackProgress(msgspec.Struct, frozen=True, kw_only=True):
    """As the status API's ``progress`` (shared/progress.py), with the count of messages in
    each status (lower-case keys, every status present)."""

    total_messages: int
    processed_messages: int
    percentage: float
    counts: dict[str, int]


class CallbackPayload(msgspec.Struct, frozen=True, kw_only=True):
    transaction_id: str
    event_type: str = EVENT_TYPE
    old_status: TxStatus
    new_status: TxStatus
    # msgspec writes an aware UTC datetime as RFC 3339 with a ``Z``.
    timestamp: datetime
    progress: CallbackProgress
    # The transaction's final stats (services/tracker/completion.py) on COMPLETED.
    stats: dict[str, Any] | None = None


def deliveries_of(tx: Transaction, now: datetime) -> list[CallbackDelivery]:
    """The callbacks of every change in the transaction's history (none without a URL)."""
    if not tx.callback_url:
        return []
    shown = compute_progress(tx, now).progress
    progress = CallbackProgress(
        total_messages=shown.total_messages,
        processed_messages=shown.processed_messages,
        percentage=shown.percentage,
        counts=message_counts(tx),
    )
    history = tx.status_history
    found = []
    for seq in range(1, len(history)):
        old, entry = history[seq - 1], history[seq]
        payload = CallbackPayload(
            transaction_id=tx.id,
            old_status=old.status,
            new_status=entry.status,
            timestamp=entry.at.astimezone(UTC),
            progress=progress,
            stats=tx.stats if entry.status == TxStatus.COMPLETED else None,
        )
        found.append(
            CallbackDelivery(
                id=delivery_id(tx.id, seq),
                transaction_id=tx.id,
                tenant=tx.tenant,
                seq=seq,
                url=tx.callback_url,
                old_status=old.status,
                new_status=entry.status,
                body=_encoder.encode(payload).decode("utf-8"),
                state=CallbackState.PENDING,
                next_attempt_at=now,
                lease_until=_NEVER,
                created_at=now,
                updated_at=now,
            )
        )
    return found


class CallbackActor(Actor[TxStatusChanged]):
    """On every ``email.tx.status.<STATUS>``: the transaction's callbacks into the outbox."""

    spec = CONSUMERS.TRACKER_CALLBACKS
    event_type = TxStatusChanged

    def __init__(self, store: Store, broker: Broker) -> None:
        self.store = store
        self.broker = broker

    async def handle(self, event: TxStatusChanged) -> None:
        if event.old_status is None:
            return  # the transaction's creation: the client knows of it from its own request
        raw = await self.store.transactions.find_one({"_id": event.transaction_id})
        if raw is None:
            log.warning("status change of an unknown transaction")
            return
        tx = from_document(raw, Transaction)
        deliveries = deliveries_of(tx, stored_now())
        if not deliveries:
            return
        added = await insert_new(self.store.callbacks, [to_document(d) for d in deliveries])
        await announce_due(
            self.broker, tx.id, msg_id=f"{tx.id}:callback-due:{len(tx.status_history)}"
        )
        log.info("callbacks queued", new_status=event.new_status, added=added)
