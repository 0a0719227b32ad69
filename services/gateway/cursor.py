"""Opaque pagination cursors: URL-safe base64 of a small JSON object.

Clients must treat them as opaque; the handlers decode them into typed positions, and a
cursor that does not decode is ``INVALID_CURSOR``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import datetime
from typing import TypeVar

import msgspec

from services.gateway.errors import ApiError, Code

__all__ = [
    "RowPosition",
    "TimePosition",
    "decode_cursor",
    "encode_cursor",
    "newest_after",
    "newest_cursor",
]

P = TypeVar("P", bound=msgspec.Struct)


class TimePosition(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The last transaction of a page: newest first by (created_at, _id)."""

    created_at: datetime
    id: str


class RowPosition(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The last row error of a page: by (row, _id)."""

    row: int
    id: str


_encoder = msgspec.json.Encoder()


def encode_cursor(position: msgspec.Struct) -> str:
    return base64.urlsafe_b64encode(_encoder.encode(position)).decode("ascii").rstrip("=")


def decode_cursor(cursor: str, kind: type[P]) -> P:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return msgspec.json.decode(raw, type=kind)
    except (binascii.Error, ValueError, msgspec.DecodeError) as e:
        raise ApiError(Code.INVALID_CURSOR, "the cursor is not one this API handed out") from e


def newest_after(cursor: str | None) -> tuple[datetime, str] | None:
    """Where a newest-first listing resumes: after the (time, id) its cursor holds."""
    if cursor is None:
        return None
    position = decode_cursor(cursor, TimePosition)
    return position.created_at, position.id


def newest_cursor(found: Sequence[tuple[datetime, str]], limit: int) -> str | None:
    """The cursor of the page after ``found[:limit]``, given each item's (time, id) and one
    item past the page when there is more; None on the last page."""
    if len(found) <= limit:
        return None
    at, last = found[limit - 1]
    return encode_cursor(TimePosition(created_at=at, id=last))
