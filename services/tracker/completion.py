"""Completion: a SENT transaction whose messages all have a final status becomes COMPLETED.

The decision reads the per-status counters (never counts messages) and is made by one
conditional transition from SENT, which stores the final stats in the same update: however
many replicas decide it at once, one of them makes the change and one event goes out.

It is checked after every batch of outcomes, once more when the transaction reaches SENT
(its last outcomes may have arrived before the sender finished: services/tracker/
delivery_timeout.py), and after its delivery timeout expired what was left.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import structlog

from shared.broker import Broker
from shared.documents import StatusEntry, Transaction, from_document
from shared.status import FINAL_MESSAGE_STATUSES
from shared.status import TxStatus as T
from shared.store import Store
from shared.transitions import transition_tx

__all__ = ["complete_if_done", "complete_read", "completion_stats", "final_counts"]

log = structlog.get_logger("tracker.completion")

_FINAL_KEYS = tuple(sorted(status.lower() for status in FINAL_MESSAGE_STATUSES))


def final_counts(counters: dict[str, int]) -> dict[str, int]:
    """How many messages are in each final status, by lower-case status key."""
    return {key: counters.get(key, 0) for key in _FINAL_KEYS}


def completion_stats(tx: Transaction, now: datetime) -> dict[str, Any]:
    """The final stats: outcome counts and their share of the total, time in each status."""
    total = tx.counters.get("total", 0)
    counts = final_counts(tx.counters)
    return {
        "total": total,
        "invalid": tx.counters.get("invalid", 0),
        "counts": counts,
        "rates": {key: (count / total if total else 0.0) for key, count in counts.items()},
        "seconds_in_status": seconds_in_status(tx.status_history, now),
        "seconds_total": max((now - tx.created_at).total_seconds(), 0.0),
    }


def seconds_in_status(history: Sequence[StatusEntry], now: datetime) -> dict[str, float]:
    """Each status's time from its entry to the next one (the last one's until ``now``)."""
    spent: dict[str, float] = {}
    ends = [entry.at for entry in history[1:]] + [now]
    for entry, end in zip(history, ends, strict=True):
        seconds = max((end - entry.at).total_seconds(), 0.0)
        spent[entry.status.value] = spent.get(entry.status.value, 0.0) + seconds
    return spent


async def complete_if_done(store: Store, broker: Broker, transaction_id: str) -> bool:
    """Complete the transaction if it is SENT and every message has a final status.

    True when this call made the change.
    """
    raw = await store.transactions.find_one({"_id": transaction_id})
    if raw is None:
        log.warning("completion check for an unknown transaction", transaction_id=transaction_id)
        return False
    return await complete_read(store, broker, from_document(raw, Transaction))


async def complete_read(store: Store, broker: Broker, tx: Transaction) -> bool:
    """``complete_if_done`` on the transaction as the caller just read it."""
    if tx.status != T.SENT:
        return False
    total = tx.counters.get("total", 0)
    done = sum(final_counts(tx.counters).values())
    if done < total:
        return False
    stats = completion_stats(tx, datetime.now(UTC))
    changed = await transition_tx(
        store,
        broker,
        tx,
        T.COMPLETED,
        metadata={"counts": stats["counts"]},
        also_set={"stats": stats},
    )
    if changed:
        log.info("transaction completed", transaction_id=tx.id, **stats["counts"])
    return changed
