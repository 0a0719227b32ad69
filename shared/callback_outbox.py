"""The callbacks outbox (``callbacks``): one ``CallbackDelivery`` per status change of a
transaction that has a callback URL.

The tracker records them (services/tracker/callbacks.py) and delivers them
(services/tracker/callback_pump.py); the gateway lists them and asks for replays
(services/gateway/callbacks.py). Whoever wants a transaction's callbacks looked at
announces ``CallbackDue`` on ``email.callback.due``.

Documents are addressed by ``_id`` only: a transaction's are ``<tx>:1`` up to
``<tx>:<MAX_SEQ - 1>`` (a status history holds each status at most once), read with one
``_id: {$in}`` — the embedded store scans every document for most other queries.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Final

from shared.broker import Broker
from shared.documents import CallbackDelivery, from_document
from shared.events import CallbackDue
from shared.status import CallbackState, TxStatus
from shared.store import Store, store_reachable
from shared.topology import Subjects

__all__ = [
    "MAX_SEQ",
    "announce_due",
    "delivery_id",
    "load_deliveries",
    "request_replay",
]

# Above any change's index in a status history: each status appears in it at most once.
MAX_SEQ: Final = len(TxStatus)


def delivery_id(transaction_id: str, seq: int) -> str:
    """The callback of the transaction's ``seq``-th change: its ``_id`` and ``webhook-id``."""
    return f"{transaction_id}:{seq}"


async def load_deliveries(store: Store, transaction_id: str) -> list[CallbackDelivery]:
    """The transaction's callbacks, in the order of its changes."""
    ids = [delivery_id(transaction_id, seq) for seq in range(1, MAX_SEQ)]
    with store_reachable("read callbacks"):
        found = await store.callbacks.find({"_id": {"$in": ids}}).to_list(None)
    return sorted((from_document(raw, CallbackDelivery) for raw in found), key=lambda d: d.seq)


async def announce_due(broker: Broker, transaction_id: str, *, msg_id: str | None = None) -> None:
    """Ask the tracker's pump to deliver what the transaction has due; ``msg_id`` lets the
    stream drop a repeat of the same announcement (none: always a new one)."""
    await broker.publish(
        Subjects.CALLBACK_DUE,
        CallbackDue(transaction_id=transaction_id),
        msg_id=msg_id or f"{transaction_id}:callback-due:{uuid.uuid4().hex}",
    )


async def request_replay(store: Store, delivery: CallbackDelivery, now: datetime) -> None:
    """Queue the callback to be sent again now, whatever its state, with its retries
    counted afresh; ``announce_due`` then has the pump send it.

    A callback being sent at this moment keeps its lease: that try is the replay. Queued
    again, it keeps its place in its transaction's order: after the earlier callbacks still
    pending, before the later ones.
    """
    with store_reachable("replay callback"):
        await store.callbacks.update_one(
            {"_id": delivery.id},
            {
                "$set": {
                    "state": CallbackState.PENDING,
                    "failures": 0,
                    "next_attempt_at": now,
                    "replay_requested": True,
                    "updated_at": now,
                }
            },
        )
