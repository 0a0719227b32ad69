"""Raw content of ``SendEmail``: what the simulator reads from a MIME message's headers.

SES v2 takes Raw content as the message's bytes (base64 in the REST JSON, decoded by the
request shape); the recipients are the ``Destination`` when there is one, else the
message's To, Cc and Bcc. Only the header block is parsed, never the body: a Raw send costs
little more than a Simple one.
"""

from __future__ import annotations

from email.parser import BytesHeaderParser
from email.policy import default
from email.utils import getaddresses
from typing import Final

import msgspec

__all__ = ["RECORDED_HEADERS", "RawMail", "read_raw"]

# The headers the send log keeps: what the bulk-sender rules (RFC 8058) require.
RECORDED_HEADERS: Final = ("List-Unsubscribe", "List-Unsubscribe-Post")

_parser: Final = BytesHeaderParser(policy=default)


class RawMail(msgspec.Struct, frozen=True, kw_only=True):
    source: str | None  # the From header's address
    recipients: list[str]  # To, Cc and Bcc
    subject: str
    headers: dict[str, str]  # those of RECORDED_HEADERS the message has


def _addresses(values: list[str]) -> list[str]:
    return [address for _, address in getaddresses(values) if address]


def read_raw(data: bytes) -> RawMail:
    message = _parser.parsebytes(data)
    senders = _addresses([str(v) for v in message.get_all("From", [])])
    recipients = _addresses(
        [str(v) for name in ("To", "Cc", "Bcc") for v in message.get_all(name, [])]
    )
    subject = message["Subject"]
    return RawMail(
        source=senders[0] if senders else None,
        recipients=recipients,
        subject="" if subject is None else str(subject),
        headers={
            name: str(value) for name in RECORDED_HEADERS if (value := message[name]) is not None
        },
    )
