"""NATS payloads between services (ARCHITECTURE §3).

Events tolerate unknown fields (a newer producer may add some), so these Structs do not
forbid them; schema evolution adds fields with defaults and never changes a type.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Final, TypeVar

import msgspec

from shared.status import AlertState, MessageStatus, TxStatus

__all__ = [
    "SES_EVENTS_GATHER_SECONDS",
    "Alert",
    "AlertTransaction",
    "CallbackDue",
    "ControlAction",
    "MessageOutcome",
    "MessageOutcomes",
    "SendBatch",
    "SesEvents",
    "TxAccepted",
    "TxControl",
    "TxDue",
    "TxExpire",
    "TxIngested",
    "TxStatusChanged",
    "decoder",
    "encode",
]


class TxAccepted(msgspec.Struct, frozen=True, kw_only=True):
    transaction_id: str


class TxIngested(msgspec.Struct, frozen=True, kw_only=True):
    transaction_id: str
    batches: int


class TxDue(msgspec.Struct, frozen=True, kw_only=True):
    transaction_id: str
    slot: str
    # The transaction's ``schedule.generation`` when the schedule was published: a slot that
    # fires after a reschedule (a newer generation) is stale and does nothing.
    generation: int = 0


class ControlAction(StrEnum):
    CANCEL = "cancel"
    RESCHEDULE = "reschedule"


class TxControl(msgspec.Struct, frozen=True, kw_only=True):
    """A client's request about a transaction that the scheduler carries out.

    The gateway records the request on the transaction first (``cancel_requested_at``, or the
    new ``send_at`` and ``schedule``), then asks; the scheduler reads what to do from there.
    """

    transaction_id: str
    action: ControlAction
    # For a reschedule: the ``schedule.generation`` it made; an older one is superseded.
    generation: int = 0


class CallbackDue(msgspec.Struct, frozen=True, kw_only=True):
    """The transaction may have callbacks to deliver now: the tracker's pump looks at its
    outbox (``callbacks``) and delivers them in order."""

    transaction_id: str


class SendBatch(msgspec.Struct, frozen=True, kw_only=True):
    transaction_id: str
    batch: int


class SesEvents(msgspec.Struct, frozen=True, kw_only=True):
    """SES events as SES wrote them (configuration-set or notification format).

    Every source (SQS poller, SNS webhook, the simulator's direct sink) puts the inner SES
    JSON objects here, unwrapped from any SNS envelope; the tracker parses them.
    """

    events: list[dict[str, Any]]


# SES events that keep coming are gathered into one ``SesEvents`` for at most this long: by
# the tracker's SQS poller, and by the simulator's NATS sink, which stands in for SNS -> SQS
# -> poller. Under load that is one stream message (and one tracker batch) per few hundred
# events; what is received is not held longer (a trickle goes as it comes).
SES_EVENTS_GATHER_SECONDS: Final = 1.0


class TxExpire(msgspec.Struct, frozen=True, kw_only=True):
    """A SENT transaction's delivery timeout is over (a schedule fires it)."""

    transaction_id: str


class MessageOutcome(msgspec.Struct, frozen=True, kw_only=True):
    message_id: str
    row: int
    email: str


class MessageOutcomes(msgspec.Struct, frozen=True, kw_only=True):
    """Messages of one transaction that reached ``status``, on ``email.msg.status.<STATUS>``:
    one event per batch of moves, never one NATS message per recipient."""

    transaction_id: str
    tenant: str
    status: MessageStatus
    timestamp: datetime
    messages: list[MessageOutcome]


class TxStatusChanged(msgspec.Struct, frozen=True, kw_only=True):
    transaction_id: str
    tenant: str
    old_status: TxStatus | None
    new_status: TxStatus
    timestamp: datetime
    metadata: dict[str, Any] = {}


class AlertTransaction(msgspec.Struct, frozen=True, kw_only=True):
    """A transaction an alert is about, with its tenant: a tenant sees only its own."""

    id: str
    tenant: str


class Alert(msgspec.Struct, frozen=True, kw_only=True):
    """An alert rule's state, on ``email.alerts.<rule>`` when it changes and kept, one
    document per rule, in the ``alerts`` collection (shared/alerts.py).

    The tracker's rules (services/tracker/alerts.py) and the sender's ``sending_paused``
    (services/sender/pause.py) share it.
    """

    rule: str
    state: AlertState
    # When it started firing (kept when it resolves).
    since: datetime
    # When it reached ``state``: for a resolved alert, when it stopped firing.
    at: datetime
    summary: str = ""
    # Why, in a word or a code (the sender's pause: SES's refusal).
    reason: str = ""
    # The transactions it is about, the first few (``details`` says how many in all).
    transactions: list[AlertTransaction] = []
    details: dict[str, Any] = {}


E = TypeVar("E", bound=msgspec.Struct)

_encoder = msgspec.json.Encoder()


def encode(event: msgspec.Struct) -> bytes:
    return _encoder.encode(event)


_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def decoder(kind: type[E]) -> msgspec.json.Decoder[E]:
    """One decoder per payload type, built once and reused."""
    found = _decoders.get(kind)
    if found is None:
        found = _decoders[kind] = msgspec.json.Decoder(kind)
    return found
