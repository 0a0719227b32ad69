"""SES events, parsed from either of SES's two formats into one normalized shape.

    configuration-set event publishing   {"eventType": "Delivery", "mail": {..., "tags": ...},
                                          "delivery": {...}}
    identity feedback notifications      {"notificationType": "Delivery", "mail": {...},
                                          "delivery": {...}}          (no tags)

Our messages are found through the ``transaction_id`` and ``row`` tags the sender puts on every
mail (or a ``message_id`` tag ``<transaction>.<row>``: SES tag values cannot hold ``:``); an
identity notification carries no tags, so its message is found by the SES message id.

SES may add fields and event types at any time: parsing never fails on what it does not know.
Unknown fields are ignored, an unknown event type keeps its name in ``kind``, and a value of
the wrong shape reads as absent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

import msgspec

from shared.documents import message_id

__all__ = ["SesEvent", "SesEventKind", "parse_ses_event"]

_canonical = msgspec.json.Encoder(order="sorted")
# The envelope of an event; what is left of an event of a type we do not know is its content.
_ENVELOPE: Final = frozenset({"eventType", "notificationType", "mail"})


class SesEventKind(StrEnum):
    """The event types SES documents; ``SesEvent.kind`` may also hold one it adds later."""

    SEND = "Send"
    DELIVERY = "Delivery"
    BOUNCE = "Bounce"
    COMPLAINT = "Complaint"
    REJECT = "Reject"
    DELIVERY_DELAY = "DeliveryDelay"
    RENDERING_FAILURE = "Rendering Failure"
    OPEN = "Open"
    CLICK = "Click"
    SUBSCRIPTION = "Subscription"


# The key of each type's own object in the event (the rest of the event is ``mail``).
_DETAIL_KEYS: Final[Mapping[str, str]] = {
    SesEventKind.SEND: "send",
    SesEventKind.DELIVERY: "delivery",
    SesEventKind.BOUNCE: "bounce",
    SesEventKind.COMPLAINT: "complaint",
    SesEventKind.REJECT: "reject",
    SesEventKind.DELIVERY_DELAY: "deliveryDelay",
    SesEventKind.RENDERING_FAILURE: "failure",
    SesEventKind.OPEN: "open",
    SesEventKind.CLICK: "click",
    SesEventKind.SUBSCRIPTION: "subscription",
}


class SesEvent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One SES event, normalized; what the tracker records on the message it is about."""

    kind: str
    transaction_id: str | None = None
    row: int | None = None
    ses_message_id: str | None = None
    # When the event happened (the type's own timestamp, else the send's).
    timestamp: datetime | None = None
    bounce_type: str | None = None
    # The type's own object as SES wrote it (``bounce``, ``delivery``, ...).
    details: dict[str, Any] = {}

    @property
    def key(self) -> str:
        """The same event's key in either format and on every redelivery: what it is, the
        mail it is about and when it happened (SES keeps all three the same in both)."""
        # The SES message id, not our tags: identity notifications carry no tags.
        mail = self.ses_message_id or self.message_id
        parts: list[object] = [self.kind, mail, self.bounce_type]
        parts.append(self.timestamp.isoformat() if self.timestamp else None)
        if self.ses_message_id is None and self.timestamp is None:
            parts.append(self.details)  # nothing else tells two such events apart
        digest = hashlib.sha256(_canonical.encode(parts)).hexdigest()
        return digest[:24]

    @property
    def message_id(self) -> str | None:
        """Our message's ``_id``, when the tags tell it."""
        if self.transaction_id is None or self.row is None:
            return None
        return message_id(self.transaction_id, self.row)


def parse_ses_event(raw: Mapping[str, Any]) -> SesEvent:
    """Normalize one SES event (either format); never raises on unknown content."""
    kind = _text(raw.get("eventType")) or _text(raw.get("notificationType")) or ""
    mail = _mapping(raw.get("mail"))
    if kind in _DETAIL_KEYS:
        details = _mapping(raw.get(_DETAIL_KEYS[kind]))
    else:  # a type SES added after us: kept whole, so nothing it says is lost
        details = {k: v for k, v in raw.items() if k not in _ENVELOPE}
    transaction_id, row = _message_key(_tags(mail.get("tags")))
    bounce_type = _text(details.get("bounceType")) if kind == SesEventKind.BOUNCE else None
    return SesEvent(
        kind=kind,
        transaction_id=transaction_id,
        row=row,
        ses_message_id=_text(mail.get("messageId")),
        timestamp=_timestamp(details.get("timestamp")) or _timestamp(mail.get("timestamp")),
        bounce_type=bounce_type,
        details=dict(details),
    )


def _message_key(tags: Mapping[str, str]) -> tuple[str | None, int | None]:
    transaction_id = tags.get("transaction_id")
    row = _integer(tags.get("row"))
    if transaction_id and row is not None:
        return transaction_id, row
    # ``<transaction>-<row>``: the message id with its ``:`` swapped for a tag-safe ``-``.
    tagged = tags.get("message_id")
    if tagged:
        head, _, tail = tagged.rpartition("-")
        row = _integer(tail)
        if head and row is not None:
            return head, row
    return None, None


def _tags(value: object) -> dict[str, str]:
    """SES writes tags as ``{name: [value, ...]}``; keep each tag's first string value."""
    tags: dict[str, str] = {}
    for name, values in _mapping(value).items():
        first = values[0] if isinstance(values, list) and values else values
        if isinstance(name, str) and isinstance(first, str):
            tags[name] = first
    return tags


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _integer(value: object) -> int | None:
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
