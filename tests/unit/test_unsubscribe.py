"""Unsubscribe links: signed tokens that name (tenant, email), and the settings they need."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import pytest

from shared.errors import PermanentError
from shared.settings import (
    GatewaySettings,
    SenderSettings,
    SettingsError,
    load_settings,
    require_public_base_url,
    require_unsubscribe_secret,
)
from shared.unsubscribe import (
    InvalidUnsubscribeToken,
    list_unsubscribe_headers,
    make_token,
    unsubscribe_url,
    verify_token,
)

SECRET = "a-secret-of-the-test-at-least-32-characters-long"
URL_SAFE = re.compile(r"[A-Za-z0-9_.-]+")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_token_names_its_tenant_and_address() -> None:
    token = make_token(SECRET, "acme", "Jöe.Bloggs+news@Example.com")
    assert URL_SAFE.fullmatch(token)
    assert verify_token(SECRET, token) == ("acme", "Jöe.Bloggs+news@Example.com")


def test_tokens_differ_by_tenant_and_address() -> None:
    tokens = {
        make_token(SECRET, "acme", "a@example.com"),
        make_token(SECRET, "acme", "b@example.com"),
        make_token(SECRET, "other", "a@example.com"),
    }
    assert len(tokens) == 3


def test_another_secret_does_not_verify() -> None:
    token = make_token(SECRET, "acme", "a@example.com")
    with pytest.raises(InvalidUnsubscribeToken):
        verify_token("another-secret-also-at-least-32-characters", token)


def test_changing_any_character_invalidates_the_token() -> None:
    token = make_token(SECRET, "acme", "a@example.com")
    for i, char in enumerate(token):
        for replacement in {"A", "B", "_", "."} - {char}:
            tampered = token[:i] + replacement + token[i + 1 :]
            with pytest.raises(InvalidUnsubscribeToken):
                verify_token(SECRET, tampered)


def test_another_address_with_the_old_signature_is_refused() -> None:
    payload, signature = make_token(SECRET, "acme", "a@example.com").split(".")
    forged = _b64(b'["acme","victim@example.com"]')
    with pytest.raises(InvalidUnsubscribeToken):
        verify_token(SECRET, f"{forged}.{signature}")
    # The same payload, signed as the format says, is accepted: the test forges nothing else.
    mac = hmac.new(SECRET.encode(), b"unsubscribe.v1." + forged.encode(), hashlib.sha256)
    assert verify_token(SECRET, f"{forged}.{_b64(mac.digest())}") == (
        "acme",
        "victim@example.com",
    )
    assert payload != forged


@pytest.mark.parametrize(
    "token",
    [
        "",
        "no-dot-at-all",
        "a.b.c",
        "payload." + "x" * 42,
        "payload." + "x" * 44,
        "pay load." + "x" * 43,
        "päyload." + "x" * 43,
        "p" * 5000 + "." + "x" * 43,
    ],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidUnsubscribeToken):
        verify_token(SECRET, token)


def test_a_signed_payload_of_the_wrong_shape_is_refused() -> None:
    payload = _b64(b'{"tenant": "acme"}')
    mac = hmac.new(SECRET.encode(), b"unsubscribe.v1." + payload.encode(), hashlib.sha256)
    with pytest.raises(InvalidUnsubscribeToken):
        verify_token(SECRET, f"{payload}.{_b64(mac.digest())}")


def test_the_error_is_permanent() -> None:
    assert issubclass(InvalidUnsubscribeToken, PermanentError)


def test_the_link_and_the_rfc_8058_headers() -> None:
    url = unsubscribe_url("https://mail.example.com/", SECRET, "acme", "a@example.com")
    prefix = "https://mail.example.com/u/"
    assert url.startswith(prefix)
    assert verify_token(SECRET, url.removeprefix(prefix)) == ("acme", "a@example.com")
    headers = list_unsubscribe_headers("https://mail.example.com", SECRET, "acme", "a@example.com")
    assert headers == {
        "List-Unsubscribe": f"<{url}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


@pytest.mark.parametrize("kind", [GatewaySettings, SenderSettings])
def test_no_secret_is_a_start_up_error(kind: type[GatewaySettings | SenderSettings]) -> None:
    with pytest.raises(SettingsError, match="UNSUBSCRIBE_SECRET is not set"):
        require_unsubscribe_secret(load_settings(kind, {}))
    loaded = load_settings(kind, {"UNSUBSCRIBE_SECRET": SECRET})
    assert require_unsubscribe_secret(loaded) == SECRET


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(SettingsError, match="unsubscribe_secret"):
        load_settings(SenderSettings, {"UNSUBSCRIBE_SECRET": "too-short"})


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://mail.example.com", "https://mail.example.com"),
        ("https://mail.example.com/email/", "https://mail.example.com/email"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://localhost:9000/", "http://localhost:9000"),
        ("http://[::1]:8000", "http://[::1]:8000"),
    ],
)
def test_public_base_urls_accepted(url: str, expected: str) -> None:
    settings = load_settings(SenderSettings, {"PUBLIC_BASE_URL": url})
    assert require_public_base_url(settings) == expected


@pytest.mark.parametrize(
    "url",
    [
        "",
        "http://mail.example.com",
        "ftp://mail.example.com",
        "mail.example.com",
        "https://",
        "https://mail.example.com/?a=1",
        "https://mail.example.com/#top",
        "http://[::1",
    ],
)
def test_public_base_urls_refused(url: str) -> None:
    settings = load_settings(SenderSettings, {"PUBLIC_BASE_URL": url})
    with pytest.raises(SettingsError, match="PUBLIC_BASE_URL"):
        require_public_base_url(settings)
