"""A rendered mail as a MIME message, for SES's Raw content: the only way to carry headers
of our own (``List-Unsubscribe``) in SES v2, whose Simple content takes none.

Built with the standard library's ``email`` package: text and HTML as
``multipart/alternative`` (or a single part when there is one), UTF-8, 7-bit clean on the
wire (quoted-printable or base64, whichever the package judges shorter), CRLF line ends,
and the headers a mail needs: From, To, Subject (RFC 2047 encoded when not ASCII), Date,
Message-ID, MIME-Version. The caller's headers (``List-Unsubscribe``...) are written as
given, never folded: a folded URL is a broken URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime, make_msgid, parseaddr
from typing import TYPE_CHECKING, Final

from shared.errors import PermanentError
from shared.template import RenderedEmail

__all__ = ["MimeError", "build_mime"]

# Headers ``build_mime`` writes itself (and every Content-*): ``headers`` may not name them.
_OWN: Final = frozenset(
    {"from", "to", "subject", "date", "message-id", "mime-version", "content-type"}
)
# RFC 5322's limit of a line, CRLF excluded.
_MAX_LINE: Final = 998


def _own(name: str) -> bool:
    lower = name.lower()
    return lower in _OWN or lower.startswith("content-")


if TYPE_CHECKING:
    _EmailPolicy = EmailPolicy[EmailMessage]
else:  # not subscriptable at run time before Python 3.13
    _EmailPolicy = EmailPolicy


class _Policy(_EmailPolicy):
    """``email.policy.SMTP``, except that the caller's headers are written as given, on one
    line. The package folds a header holding a word longer than a line (the unsubscribe URL)
    into RFC 2047 encoded words, which no mail client reads as a URL."""

    def fold_binary(self, name: str, value: str) -> bytes:
        fits = len(name) + 2 + len(value) <= _MAX_LINE
        if not _own(name) and value.isascii() and fits:
            return f"{name}: {value}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


# 7-bit bodies: nothing on the way depends on 8BITMIME.
_POLICY: Final = _Policy(linesep="\r\n", cte_type="7bit")


class MimeError(PermanentError):
    """A mail that cannot be written as MIME: a header with a line break, say."""


def build_mime(
    from_address: str, to: str, mail: RenderedEmail, headers: Mapping[str, str]
) -> bytes:
    """The mail as bytes for ``Content={"Raw": {"Data": ...}}``, with ``headers`` added."""
    message = EmailMessage(policy=_POLICY)
    try:
        message["From"] = from_address
        message["To"] = to
        message["Subject"] = mail.subject
        message["Date"] = format_datetime(datetime.now(UTC))
        # A domain of our own: without one, make_msgid asks DNS for this host's name.
        domain = parseaddr(from_address)[1].rpartition("@")[2] or "localhost"
        message["Message-ID"] = make_msgid(domain=domain)
        for name, value in headers.items():
            if _own(name):
                raise MimeError(f"header {name!r} is written by build_mime itself")
            message[name] = value
        if mail.text is not None:
            message.set_content(mail.text, charset="utf-8")
            if mail.html is not None:
                message.add_alternative(mail.html, subtype="html", charset="utf-8")
        elif mail.html is not None:
            message.set_content(mail.html, subtype="html", charset="utf-8")
        else:
            message.set_content("", charset="utf-8")
        return message.as_bytes()
    except (ValueError, TypeError) as e:  # email.errors.HeaderParseError is a ValueError
        raise MimeError(f"cannot write the mail as MIME: {e}") from e
