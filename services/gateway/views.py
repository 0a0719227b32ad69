"""What the transaction endpoints answer with: frozen Structs, built from stored documents."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from services.gateway.error_catalogue import RowCode
from services.ingest.validation import RowErrorCode
from shared.documents import Message, RowError, Schedule, Transaction, from_document
from shared.schedule import shifted
from shared.status import MessageStatus, TxStatus

__all__ = [
    "MessageError",
    "MessageEvent",
    "MessageItem",
    "MessagePage",
    "RowErrorDetails",
    "RowErrorItem",
    "RowErrorPage",
    "ScheduleView",
    "StatusHistoryItem",
    "TransactionAccepted",
    "TransactionPage",
    "TransactionSummary",
    "TransactionView",
    "counters_view",
    "message_item",
    "row_error_item",
    "schedule_view",
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


class ScheduleView(msgspec.Struct, frozen=True, kw_only=True):
    """When the transaction's slots fire (rows due in the same minute form one slot)."""

    slots: int
    # When its first and last slot that waits for a time fire, reschedules included; null
    # when every row was due at once.
    first_slot_at: datetime | None
    last_slot_at: datetime | None
    # How far reschedules moved every slot, in seconds.
    shift_seconds: float


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
    # Once COMPLETED: the final counts and rates per outcome and the seconds spent in each
    # status (services/tracker/completion.py ``completion_stats``).
    stats: dict[str, Any] | None
    failure: dict[str, Any] | None
    # Set once ingest has read the file.
    schedule: ScheduleView | None
    # When POST .../cancel was asked; the status becomes CANCELLED once in-flight sends end.
    cancel_requested_at: datetime | None
    # The transaction POST .../retry-failed made of this one's FAILED and EXPIRED messages.
    retried_as: str | None
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


class MessageEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An SES event about the message, as the tracker recorded it."""

    # SES's event type: Send, Delivery, Bounce, Complaint, Reject, DeliveryDelay, ...
    kind: str = ""
    timestamp: datetime | None = None
    ses_message_id: str | None = None
    # Permanent, Transient or Undetermined, for a Bounce.
    bounce_type: str | None = None
    # The type's own object as SES wrote it (``bounce``, ``delivery``, ...).
    details: dict[str, Any] = {}


class MessageError(msgspec.Struct, frozen=True, kw_only=True):
    """Why the last send attempt failed (SES's refusal, for a FAILED message)."""

    code: str = ""
    message: str = ""
    at: datetime | None = None


class MessageItem(msgspec.Struct, frozen=True, kw_only=True):
    """One recipient: where its message is and what happened to it."""

    row: int
    email: str
    status: MessageStatus
    # The row's placeholder values, by normalized column name.
    data: dict[str, str]
    send_at: datetime | None
    attempts: int
    last_error: MessageError | None
    events: list[MessageEvent]
    updated_at: datetime | None


class MessagePage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[MessageItem]
    next_cursor: str | None


def message_item(message: Message) -> MessageItem:
    return MessageItem(
        row=message.row,
        email=message.email,
        status=message.status,
        data=message.data,
        send_at=message.send_at,
        attempts=message.attempts,
        last_error=(
            None if message.last_error is None else from_document(message.last_error, MessageError)
        ),
        events=[from_document(event, MessageEvent) for event in message.events],
        updated_at=message.updated_at,
    )


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
        schedule=None if tx.schedule is None else schedule_view(tx.schedule),
        cancel_requested_at=tx.cancel_requested_at,
        retried_as=tx.retried_as,
        created_at=tx.created_at,
        updated_at=tx.updated_at,
    )


def schedule_view(schedule: Schedule) -> ScheduleView:
    shift = schedule.shift_seconds
    return ScheduleView(
        slots=schedule.slots,
        first_slot_at=None if schedule.first_at is None else shifted(schedule.first_at, shift),
        last_slot_at=None if schedule.last_at is None else shifted(schedule.last_at, shift),
        shift_seconds=shift,
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
