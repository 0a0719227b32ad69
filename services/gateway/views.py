"""What the transaction endpoints answer with: frozen Structs, built from stored documents."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from services.gateway.error_catalogue import RowCode
from services.ingest.validation import RowErrorCode
from shared.documents import RowError, Transaction
from shared.status import MessageStatus, TxStatus

__all__ = [
    "RowErrorDetails",
    "RowErrorItem",
    "RowErrorPage",
    "StatusHistoryItem",
    "TransactionAccepted",
    "TransactionPage",
    "TransactionSummary",
    "TransactionView",
    "counters_view",
    "row_error_item",
    "transaction_summary",
    "transaction_view",
]

_COUNTER_KEYS = ("total", "invalid", *(status.lower() for status in MessageStatus))


class TransactionAccepted(msgspec.Struct, frozen=True, kw_only=True):
    transaction_id: str
    status: TxStatus
    template_id: str
    callback_url: str | None
    send_at: datetime | None
    metadata: dict[str, str]
    filename: str | None
    size_bytes: int
    created_at: datetime


class StatusHistoryItem(msgspec.Struct, frozen=True, kw_only=True):
    status: TxStatus
    timestamp: datetime
    metadata: dict[str, Any]


class TransactionSummary(msgspec.Struct, frozen=True, kw_only=True):
    transaction_id: str
    status: TxStatus
    template_id: str
    callback_url: str | None
    send_at: datetime | None
    counters: dict[str, int]
    created_at: datetime
    updated_at: datetime


class TransactionView(msgspec.Struct, frozen=True, kw_only=True):
    transaction_id: str
    status: TxStatus
    template_id: str
    callback_url: str | None
    send_at: datetime | None
    metadata: dict[str, str]
    counters: dict[str, int]
    ingest_progress: dict[str, int]
    status_history: list[StatusHistoryItem]
    stats: dict[str, Any] | None
    failure: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime


class TransactionPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[TransactionSummary]
    next_cursor: str | None


class RowErrorDetails(msgspec.Struct, frozen=True, kw_only=True):
    row: int
    field: str | None
    value: str | None
    expected_format: str | None


class RowErrorItem(msgspec.Struct, frozen=True, kw_only=True):
    """The seed's row error shape."""

    code: RowCode
    message: str
    details: RowErrorDetails
    recovery_action: str


class RowErrorPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[RowErrorItem]
    next_cursor: str | None


def counters_view(counters: dict[str, int]) -> dict[str, int]:
    """The stored counters, with every message status present (0 when absent)."""
    return {**dict.fromkeys(_COUNTER_KEYS, 0), **counters}


def transaction_summary(tx: Transaction) -> TransactionSummary:
    return TransactionSummary(
        transaction_id=tx.id,
        status=tx.status,
        template_id=tx.template_id,
        callback_url=tx.callback_url,
        send_at=tx.send_at,
        counters=counters_view(tx.counters),
        created_at=tx.created_at,
        updated_at=tx.updated_at,
    )


def transaction_view(tx: Transaction) -> TransactionView:
    return TransactionView(
        transaction_id=tx.id,
        status=tx.status,
        template_id=tx.template_id,
        callback_url=tx.callback_url,
        send_at=tx.send_at,
        metadata=tx.metadata,
        counters=counters_view(tx.counters),
        ingest_progress=tx.ingest_progress,
        status_history=[
            StatusHistoryItem(status=e.status, timestamp=e.at, metadata=e.metadata)
            for e in tx.status_history
        ],
        stats=tx.stats,
        failure=tx.failure,
        created_at=tx.created_at,
        updated_at=tx.updated_at,
    )


def row_error_item(error: RowError) -> RowErrorItem:
    return RowErrorItem(
        # Stored codes are the enum's, and codes are only ever added.
        code=RowErrorCode(error.code),
        message=error.message,
        details=RowErrorDetails(
            row=error.row,
            field=error.field,
            value=error.value,
            expected_format=error.expected_format,
        ),
        recovery_action=error.recovery_action,
    )
