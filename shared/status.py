"""Transaction and message statuses (ARCHITECTURE §1)."""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "FINAL_MESSAGE_STATUSES",
    "FINAL_TX_STATUSES",
    "AlertState",
    "CallbackState",
    "DeadLetterState",
    "IdempotencyState",
    "MessageStatus",
    "TxStatus",
]


class TxStatus(StrEnum):
    ACCEPT = "ACCEPT"
    PROCESSING = "PROCESSING"
    SCHEDULED = "SCHEDULED"
    READY_TO_SEND = "READY_TO_SEND"
    SENT = "SENT"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class MessageStatus(StrEnum):
    SCHEDULED = "SCHEDULED"
    READY_TO_SEND = "READY_TO_SEND"
    SENDING = "SENDING"
    SENT = "SENT"
    DELIVERED = "DELIVERED"
    BOUNCED = "BOUNCED"
    COMPLAINED = "COMPLAINED"
    FAILED = "FAILED"
    SUPPRESSED = "SUPPRESSED"
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"


class CallbackState(StrEnum):
    """A callback of one status change (``shared.documents.CallbackDelivery``)."""

    PENDING = "pending"  # not delivered yet: waiting for its turn, its time, or in flight
    DELIVERED = "delivered"  # answered with a 2xx
    DEAD = "dead"  # every retry failed: in the dead letters
    # Not sent: its URL answered 410 Gone (this callback or an earlier one of the tenant)
    SKIPPED = "skipped"


class DeadLetterState(StrEnum):
    """A dead letter under manual review (``shared.documents.DeadLetter``): open until an
    operator retries or discards it; either is final, and the letter is never deleted."""

    OPEN = "open"
    RETRIED = "retried"
    DISCARDED = "discarded"


class AlertState(StrEnum):
    """An alert rule (``shared.events.Alert``): firing while its condition holds."""

    FIRING = "firing"
    RESOLVED = "resolved"


class IdempotencyState(StrEnum):
    """An ``Idempotency-Key``: claimed by a submission, then done once its transaction is
    recorded and announced."""

    PENDING = "PENDING"
    DONE = "DONE"


FINAL_TX_STATUSES = frozenset({TxStatus.COMPLETED, TxStatus.FAILED, TxStatus.CANCELLED})

# A message in one of these has its outcome; a transaction completes when all of its
# messages are here.
FINAL_MESSAGE_STATUSES = frozenset(
    {
        MessageStatus.DELIVERED,
        MessageStatus.BOUNCED,
        MessageStatus.COMPLAINED,
        MessageStatus.FAILED,
        MessageStatus.SUPPRESSED,
        MessageStatus.EXPIRED,
        MessageStatus.CANCELLED,
    }
)
