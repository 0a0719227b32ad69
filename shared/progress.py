"""A transaction's progress and estimated completion: a pure function of the record.

While ingest reads the file (PROCESSING, before the ``total`` counter is set), the file's
size in rows is not known yet, and the numbers follow ingest, batch by batch, from its
``ingest_progress``: ``total_messages`` is the rows read so far (valid and invalid) and
``processed_messages`` the rows that have become messages so far; ``percentage`` stays 0,
since sending has not begun, and there is no estimate.

From then on ``total_messages`` is the ``total`` counter and ``processed_messages`` sums
the counters of the final message statuses (so it starts again from 0 when ingest hands
over). The estimate extrapolates linearly: the messages processed since the transaction
became READY_TO_SEND, at the rate they were processed, leave the rest to go at that rate.
There is no estimate before anything is processed, nor once the transaction is final.

The gateway's status view and the tracker's callbacks both report it (one computation).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec

from shared.documents import Transaction
from shared.status import FINAL_MESSAGE_STATUSES, FINAL_TX_STATUSES, MessageStatus, TxStatus

__all__ = ["Progress", "TransactionProgress", "compute_progress", "message_counts"]


class Progress(msgspec.Struct, frozen=True, kw_only=True):
    total_messages: int
    processed_messages: int
    percentage: float


class TransactionProgress(msgspec.Struct, frozen=True, kw_only=True):
    transaction_id: str
    status: TxStatus
    progress: Progress
    estimated_completion: datetime | None


_FINAL_KEYS = tuple(sorted(status.lower() for status in FINAL_MESSAGE_STATUSES))


def message_counts(tx: Transaction) -> dict[str, int]:
    """How many messages are in each status now, every status present, by the lower-case
    keys of the counters."""
    return {status.lower(): tx.counters.get(status.lower(), 0) for status in MessageStatus}


def compute_progress(tx: Transaction, now: datetime) -> TransactionProgress:
    if tx.status is TxStatus.PROCESSING and "total" not in tx.counters:
        return _ingesting(tx)
    total = tx.counters.get("total", 0)
    processed = sum(tx.counters.get(key, 0) for key in _FINAL_KEYS)
    if tx.status is TxStatus.COMPLETED:
        percentage = 100.0
    elif total <= 0:
        percentage = 0.0
    else:
        percentage = round(min(100.0, processed * 100.0 / total), 1)
    return TransactionProgress(
        transaction_id=tx.id,
        status=tx.status,
        progress=Progress(
            total_messages=total, processed_messages=processed, percentage=percentage
        ),
        estimated_completion=_estimate(tx, total, processed, now),
    )


def _ingesting(tx: Transaction) -> TransactionProgress:
    stored = tx.ingest_progress.get("valid", 0)
    return TransactionProgress(
        transaction_id=tx.id,
        status=tx.status,
        progress=Progress(
            total_messages=stored + tx.ingest_progress.get("invalid", 0),
            processed_messages=stored,
            percentage=0.0,
        ),
        estimated_completion=None,
    )


def _estimate(tx: Transaction, total: int, processed: int, now: datetime) -> datetime | None:
    if tx.status in FINAL_TX_STATUSES or processed <= 0:
        return None
    started = _ready_at(tx)
    if started is None:
        return None
    remaining = max(0, total - processed)
    elapsed = (now - started).total_seconds()
    if remaining == 0 or elapsed <= 0:
        return now
    return now + timedelta(seconds=remaining * elapsed / processed)


def _ready_at(tx: Transaction) -> datetime | None:
    """When sending began: the (first) READY_TO_SEND entry of the history."""
    for entry in tx.status_history:
        if entry.status == TxStatus.READY_TO_SEND:
            return entry.at
    return None
