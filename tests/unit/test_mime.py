"""``build_mime``: the Raw content of a marketing mail, read back with the ``email`` package."""

from __future__ import annotations

import email
from email.message import EmailMessage
from email.policy import default
from email.utils import parsedate_to_datetime

import pytest

from services.sender.mime import MimeError, build_mime
from shared.errors import PermanentError
from shared.template import RenderedEmail
from shared.unsubscribe import list_unsubscribe_headers

SECRET = "a-secret-of-the-test-at-least-32-characters-long"
HEADERS = list_unsubscribe_headers(
    "https://mail.example.com",
    SECRET,
    "acme",
    "a.rather.long.address+with-a-label@subdomain.example.co.uk",
)
MAIL = RenderedEmail(
    subject="Grüße, Zoë — 50 % off",
    html="<p>Hallo Zoë,</p>\n<p>" + "viel Spaß " * 30 + "</p>\n",
    text="Hallo Zoë,\n" + "viel Spaß " * 30 + "\n",
)


def _parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=default)
    assert isinstance(message, EmailMessage)
    return message


def _content(part: EmailMessage) -> str:
    text = part.get_content()
    assert isinstance(text, str)
    return text.replace("\r\n", "\n")


def test_text_and_html_are_alternatives_of_one_message() -> None:
    raw = build_mime("News <news@example.com>", "Zoë <zoe@example.com>", MAIL, HEADERS)
    message = _parse(raw)
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    assert [_content(p) for p in parts] == [MAIL.text, MAIL.html]
    assert message["MIME-Version"] == "1.0"


def test_the_headers_a_mail_needs() -> None:
    message = _parse(build_mime("News <news@example.com>", "Zoë <zoe@example.com>", MAIL, {}))
    assert message["From"] == "News <news@example.com>"
    assert message["To"] == "Zoë <zoe@example.com>"
    assert message["To"].addresses[0].addr_spec == "zoe@example.com"
    assert message["Subject"] == MAIL.subject
    assert parsedate_to_datetime(message["Date"]).tzinfo is not None
    message_id = message["Message-ID"]
    assert message_id.startswith("<")
    assert message_id.endswith("@example.com>")
    assert "List-Unsubscribe" not in message


def test_the_unsubscribe_headers_are_written_as_given() -> None:
    raw = build_mime("news@example.com", "zoe@example.com", MAIL, HEADERS)
    message = _parse(raw)
    assert message["List-Unsubscribe"] == HEADERS["List-Unsubscribe"]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # On the wire, as is: not folded, not RFC 2047 encoded (the package does that to a long
    # word by default, and a mail client then sees no URL).
    line = f"List-Unsubscribe: {HEADERS['List-Unsubscribe']}\r\n".encode()
    assert len(line) > 80
    assert line in raw
    assert b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in raw


def test_the_message_is_7_bit_with_crlf_lines_within_limits() -> None:
    raw = build_mime("news@example.com", "Zoë <zoe@example.com>", MAIL, HEADERS)
    assert raw.isascii()
    lines = raw.split(b"\r\n")
    assert b"\n" not in b"".join(lines)
    assert max(len(line) for line in lines) <= 998
    _, _, body = raw.partition(b"\r\n\r\n")
    assert max(len(line) for line in body.split(b"\r\n")) <= 78  # bodies: quoted-printable


@pytest.mark.parametrize(
    ("mail", "content_type"),
    [
        (RenderedEmail(subject="s", html="<p>only html</p>"), "text/html"),
        (RenderedEmail(subject="s", text="only text"), "text/plain"),
    ],
)
def test_one_body_is_a_single_part(mail: RenderedEmail, content_type: str) -> None:
    message = _parse(build_mime("news@example.com", "zoe@example.com", mail, HEADERS))
    assert not message.is_multipart()
    assert message.get_content_type() == content_type
    assert _content(message).strip() == (mail.html or mail.text)


def test_a_header_with_a_line_break_is_refused() -> None:
    injected = {"List-Unsubscribe": "<https://x.example/u/t>\r\nBcc: everyone@example.com"}
    with pytest.raises(MimeError):
        build_mime("news@example.com", "zoe@example.com", MAIL, injected)
    with pytest.raises(MimeError):
        build_mime("news@example.com", "zoe@example.com\r\nBcc: x@example.com", MAIL, {})
    assert issubclass(MimeError, PermanentError)


@pytest.mark.parametrize("name", ["Subject", "to", "Content-Type", "Content-Transfer-Encoding"])
def test_headers_of_its_own_cannot_be_replaced(name: str) -> None:
    with pytest.raises(MimeError, match="written by build_mime"):
        build_mime("news@example.com", "zoe@example.com", MAIL, {name: "x"})
