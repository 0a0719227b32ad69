"""Opaque pagination cursors: URL-safe base64 of a small JSON object.

Clients must treat them as opaque; the handlers decode them into typed positions, and a
cursor that does not decode is ``INVALID_CURSOR``.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import TypeVar

import msgspec

from services.gateway.errors import ApiError, Code

__all__ = ["RowPosition", "TimePosition", "decode_cursor", "encode_cursor"]

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
