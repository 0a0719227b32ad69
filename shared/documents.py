"""Stored documents: one frozen Struct per collection (ARCHITECTURE §4).

Documents go to the store with ``to_document`` and come back with ``from_document``;
``datetime`` values pass through untouched so the store keeps them as BSON dates.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

import msgspec

from shared.events import Alert
from shared.status import (
    CallbackState,
    DeadLetterState,
    IdempotencyState,
    MessageStatus,
    TxStatus,
)

__all__ = [
    "AlertRecord",
    "Batch",
    "CallbackAttempt",
    "CallbackDelivery",
    "DeadLetter",
    "DeadLetterEntry",
    "IdempotencyRecord",
    "Message",
    "Operator",
    "OperatorAction",
    "RowError",
    "S3Location",
    "Schedule",
    "SendReceipt",
    "Slot",
    "StatusEntry",
    "StoredRowError",
    "Suppression",
    "Template",
    "Transaction",
    "from_document",
    "message_id",
    "message_row",
    "suppression_id",
    "to_document",
]

D = TypeVar("D", bound=msgspec.Struct)


class S3Location(msgspec.Struct, frozen=True, kw_only=True):
    bucket: str
    key: str


class StatusEntry(msgspec.Struct, frozen=True, kw_only=True):
    status: TxStatus
    at: datetime
    metadata: dict[str, Any] = {}


class Schedule(msgspec.Struct, frozen=True, kw_only=True):
    """When a transaction's slots fire (``Slot``): set by ingest with the counters, moved by
    reschedules. The times are the slots' own, before ``shift_seconds``."""

    # Slots of the file, the immediate one ("now") included.
    slots: int
    # The fire times of the first and the last slot that waits for a time; None when none does.
    first_at: datetime | None = None
    last_at: datetime | None = None
    # Each reschedule adds one: a schedule message of an older generation is stale.
    generation: int = 0
    # Every waiting slot fires this much later than ingest planned (the reschedules' sum).
    shift_seconds: float = 0.0


class Transaction(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    id: str = msgspec.field(name="_id")
    tenant: str
    status: TxStatus
    template_id: str
    source: S3Location
    filename: str | None = None
    callback_url: str | None = None
    send_at: datetime | None = None
    metadata: dict[str, str] = {}
    # total, invalid, dispatched (sent or failed by the sender, never decremented) and one
    # lower-case key per message status holding how many messages are in it now.
    counters: dict[str, int] = {}
    batches: int = 0
    # While ingest reads the file: how many valid and invalid rows it has read so far.
    ingest_progress: dict[str, int] = {}
    # When ingest last wrote progress: a live ingest is not taken for a stuck one.
    ingest_progress_at: datetime | None = None
    # Re-announcements by the tracker of a transaction stuck in ACCEPT or PROCESSING, and
    # the last one's time (services/tracker/recovery.py).
    recoveries: int = 0
    recovered_at: datetime | None = None
    # The file's header row as written (not normalized), set by ingest once it reads it.
    columns: list[str] = []
    status_history: list[StatusEntry] = []
    stats: dict[str, Any] | None = None
    failure: dict[str, Any] | None = None
    # The submitting key's mode: "test" sends nothing real. Absent (omitted default) is "live".
    mode: str = "live"
    # Set once by POST .../cancel; the scheduler cancels what waits, ``settle`` ends it.
    cancel_requested_at: datetime | None = None
    schedule: Schedule | None = None
    # Set by POST .../retry-failed: the transaction that resends this one's FAILED and
    # EXPIRED messages (its ``metadata.retry_of`` names this one).
    retried_as: str | None = None
    created_at: datetime
    updated_at: datetime


class Message(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    id: str = msgspec.field(name="_id")
    transaction_id: str
    tenant: str
    batch: int
    row: int
    email: str
    data: dict[str, str]
    status: MessageStatus
    send_at: datetime | None = None
    attempts: int = 0
    attempt_id: str | None = None
    lease_until: datetime | None = None
    # A lost attempt's message is decided once the tracker has read SES's events up to
    # this sequence of the events stream (its Send event, if SES has the mail, is before).
    resolve_after_seq: int | None = None
    last_error: dict[str, Any] | None = None
    events: list[dict[str, Any]] = []
    updated_at: datetime | None = None


def message_id(transaction_id: str, row: int) -> str:
    """Deterministic, so ingesting the same file twice cannot duplicate a message."""
    return f"{transaction_id}:{row}"


def message_row(id_: str) -> tuple[str, int] | None:
    """The transaction and row a ``message_id`` names; None for any other string."""
    transaction_id, colon, row = id_.rpartition(":")
    if not colon or not (row.isascii() and row.isdigit()) or str(int(row)) != row:
        return None
    return transaction_id, int(row)


class RowError(msgspec.Struct, frozen=True, kw_only=True):
    """A CSV row that did not become a message, in the seed's error shape.

    ``row`` is the spreadsheet row number: the header is row 1 and every record after
    it counts one, blank lines and records with quoted line breaks included.
    """

    code: str
    message: str
    row: int
    field: str | None = None
    value: str | None = None
    expected_format: str | None = None
    recovery_action: str


class StoredRowError(msgspec.Struct, frozen=True, kw_only=True):
    id: str = msgspec.field(name="_id")
    transaction_id: str
    error: RowError
    # The row's fields as they were in the file, so the row can be fixed and resubmitted.
    fields: list[str] = []


class Suppression(msgspec.Struct, frozen=True, kw_only=True):
    """An address a tenant must not mail (a permanent bounce, a complaint, a request)."""

    id: str = msgspec.field(name="_id")  # suppression_id(tenant, email)
    tenant: str
    email: str
    reason: str
    created_at: datetime


def suppression_id(tenant: str, email: str) -> str:
    """Addressed by ``_id``: a batch's addresses are looked up with one ``$in``."""
    return f"{tenant}:{email.lower()}"


class Batch(msgspec.Struct, frozen=True, kw_only=True):
    """The rows of one send batch; NATS carries only (transaction, number)."""

    id: str = msgspec.field(name="_id")
    transaction_id: str
    number: int
    rows: list[int]
    # The slot all of its rows are due in (``Slot.slot``); None in documents older than slots.
    slot: str | None = None


class Slot(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The rows of a transaction due in the same minute, or due at once: one schedule.

    Written by ingest with the batches; the scheduler publishes one schedule message per
    slot that waits for a time and, when it fires, releases its batches and records when.
    """

    id: str = msgspec.field(name="_id")  # "<transaction>:<slot>"
    transaction_id: str
    # The UTC minute its rows are due in, "20300131T0900Z", or "now" for the rows due at once.
    slot: str
    # Never before any of its rows' send_at: the latest of them, rounded up to the second
    # (before the transaction's ``schedule.shift_seconds``).
    fire_at: datetime
    batches: list[int]
    # Set by the scheduler once its batches are released.
    fired_at: datetime | None = None
    lateness_seconds: float | None = None


class Template(msgspec.Struct, frozen=True, kw_only=True):
    id: str = msgspec.field(name="_id")
    tenant: str
    name: str
    subject: str
    html: str | None = None
    text: str | None = None
    placeholders: list[str]
    # Bulk mail (newsletters, offers): every mail carries one-click unsubscribe headers
    # (RFC 8058), as Gmail and Yahoo require of bulk senders. Absent in older documents: False.
    marketing: bool = False
    created_at: datetime


class CallbackAttempt(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One try at delivering a callback, kept in its ``CallbackDelivery``: the audit trail."""

    at: datetime
    # The receiver's answer, or None when there was none (``error`` says why).
    status_code: int | None = None
    error: str | None = None
    duration_seconds: float = 0.0
    # Not sent: the URL had answered 410 Gone before.
    skipped: bool = False
    # Asked for through POST .../callbacks/{id}/replay.
    replay: bool = False


class CallbackDelivery(msgspec.Struct, frozen=True, kw_only=True):
    """The callback of one status change of a transaction, in the ``callbacks`` outbox.

    ``_id`` is ``<transaction>:<seq>``, ``seq`` the change's index in the transaction's
    ``status_history`` (1 for the first change after ACCEPT): it orders the transaction's
    callbacks, and it is the ``webhook-id`` the receiver sees on every try. ``body`` is the
    JSON sent, fixed when the change is recorded so that every try sends the same bytes.
    """

    id: str = msgspec.field(name="_id")
    transaction_id: str
    tenant: str
    seq: int
    url: str
    old_status: TxStatus
    new_status: TxStatus
    body: str
    state: CallbackState = CallbackState.PENDING
    # Failed tries since it was recorded or last replayed: which retry delay comes next.
    failures: int = 0
    # Not tried before this; held by a pump delivering it until ``lease_until``.
    next_attempt_at: datetime
    lease_until: datetime
    attempts: list[CallbackAttempt] = []
    # Set by a replay, cleared by the try it asked for (marked ``replay`` in the trail).
    replay_requested: bool = False
    created_at: datetime
    updated_at: datetime


class Operator(msgspec.Struct, frozen=True, kw_only=True):
    """Who did something through the API: the key (its public id and prefix) and its tenant."""

    key_id: str
    key_prefix: str
    tenant: str


class DeadLetterEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One step of a dead letter's review: "retried", "retry_failed" (the retry could not
    be handed over; the letter is open again), "discarded"."""

    action: str
    at: datetime
    who: Operator
    details: dict[str, Any] = {}


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """Work that could not be done, kept for manual review.

    ``kind`` "job" is a NATS message (``stream_seq``, ``deliveries``, its payload);
    "message" is one recipient whose sends exhausted their retries (``message_id``);
    "callback" is a callback whose retries all failed (``payload`` its body, ``deliveries``
    its tries, ``message_id`` the callback's id). ``transaction_id`` is set whenever the
    work names one. Every field is stored, defaults too: the review filters on ``kind``.
    """

    id: str = msgspec.field(name="_id")
    service: str
    subject: str
    stream_seq: int
    deliveries: int
    payload: str
    error: str
    at: datetime
    kind: str = "job"
    transaction_id: str | None = None
    # The tenant whose work it was (from its transaction); None when it names none (an
    # undecodable message): then it is the platform operator's alone.
    tenant: str | None = None
    message_id: str | None = None
    # Manual review (services/gateway/dead_letters.py): open until retried or discarded.
    state: DeadLetterState = DeadLetterState.OPEN
    history: list[DeadLetterEntry] = []


class OperatorAction(msgspec.Struct, frozen=True, kw_only=True):
    """Something a person asked for through the API (cancel, reschedule, retry-failed, a
    callback replay, a dead letter's retry or discard): the audit trail of operator actions.
    Written once, never changed."""

    id: str = msgspec.field(name="_id")
    action: str
    who: Operator
    at: datetime
    transaction_id: str | None = None
    dead_letter_id: str | None = None
    details: dict[str, Any] = {}


class SendReceipt(msgspec.Struct, frozen=True, kw_only=True):
    """SES accepted this message (``_id`` is the message id) under this SES message id."""

    id: str = msgspec.field(name="_id")
    transaction_id: str
    ses_message_id: str
    at: datetime
    # Who saw it first: "sender" (SendEmail's answer) or "tracker" (SES's Send event).
    source: str


class IdempotencyRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A submission's ``Idempotency-Key``, claimed before its transaction is recorded.

    ``_id`` is ``<tenant>:<key>``: inserting it is the claim, and a second claim of the same
    key fails on the unique ``_id``. ``response`` is the 202 answer, replayed as it was.
    """

    id: str = msgspec.field(name="_id")
    tenant: str
    state: IdempotencyState
    # sha256 of the request: its fields and its file's content (or the S3 object's ETag).
    fingerprint: str
    transaction_id: str
    response: dict[str, Any]
    created_at: datetime
    # The TTL index removes the record after this.
    expires_at: datetime


class AlertRecord(msgspec.Struct, frozen=True, kw_only=True):
    """An alert rule's current state in ``alerts``; ``_id`` is the rule (shared/alerts.py).

    ``announced`` turns true once the change is on ``email.alerts.<rule>``: a change whose
    announcement a crash cut off goes out at the next look.
    """

    id: str = msgspec.field(name="_id")
    alert: Alert
    announced: bool = False


def to_document(doc: msgspec.Struct) -> dict[str, Any]:
    built = msgspec.to_builtins(doc, builtin_types=(datetime,))
    assert isinstance(built, dict)
    return built


def from_document(raw: Any, kind: type[D]) -> D:
    return msgspec.convert(raw, kind, from_attributes=False, strict=False)
