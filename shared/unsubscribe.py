"""One-click unsubscribe links (RFC 8058): a signed token naming a tenant and an address.

    payload = b64url(JSON ["tenant", "email"])
    token   = payload "." b64url(HMAC-SHA256(secret, "unsubscribe.v1." payload))

The sender puts ``list_unsubscribe_headers(...)`` on every mail of a ``marketing`` template;
the gateway serves ``<public base URL>/u/<token>``: GET confirms, POST puts the address on
the tenant's suppression list. The link is the credential, so the token is signed with a
secret the gateway and the sender share (``unsubscribe_secret``): only its holders can make
a link, and changing one character of a token (the address, the tenant or the signature)
makes it invalid. The token carries its data, so checking it needs no lookup; it does not
expire, because an unsubscribe link must keep working as long as the mail is read.

    PermanentError
    └── InputError
        └── InvalidUnsubscribeToken   malformed, or not signed with our secret
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Final

import msgspec

from shared.errors import InputError

__all__ = [
    "ONE_CLICK",
    "UNSUBSCRIBE_PATH",
    "InvalidUnsubscribeToken",
    "list_unsubscribe_headers",
    "make_token",
    "unsubscribe_url",
    "verify_token",
]

# Where the gateway serves the links: ``{UNSUBSCRIBE_PATH}/{token}``.
UNSUBSCRIBE_PATH: Final = "/u"
# RFC 8058: the header's value, which the mail client POSTs back as the form body.
ONE_CLICK: Final = "List-Unsubscribe=One-Click"

# Binds a signature to this use and this token version: a MAC made for anything else with
# the same secret is not an unsubscribe token.
_CONTEXT: Final = b"unsubscribe.v1."
# base64url without padding, twice; the bound keeps a hostile URL from costing anything.
_SHAPE: Final = re.compile(r"[A-Za-z0-9_-]{1,2048}\.[A-Za-z0-9_-]{43}")
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(tuple[str, str])


class InvalidUnsubscribeToken(InputError):
    """A token we did not make: malformed, cut short, or edited."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _sign(secret: str, payload: str) -> str:
    mac = hmac.new(secret.encode(), _CONTEXT + payload.encode("ascii"), hashlib.sha256)
    return _b64(mac.digest())


def make_token(secret: str, tenant: str, email: str) -> str:
    payload = _b64(_encoder.encode((tenant, email)))
    return f"{payload}.{_sign(secret, payload)}"


def verify_token(secret: str, token: str) -> tuple[str, str]:
    """The (tenant, email) a token names; ``InvalidUnsubscribeToken`` unless we signed it."""
    if _SHAPE.fullmatch(token) is None:
        raise InvalidUnsubscribeToken("not an unsubscribe token")
    payload, signature = token.split(".")
    # Both ASCII (checked above); compared in constant time.
    if not hmac.compare_digest(_sign(secret, payload).encode(), signature.encode()):
        raise InvalidUnsubscribeToken("the token's signature does not match")
    try:
        tenant, email = _decoder.decode(
            base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        )
    except (ValueError, msgspec.DecodeError) as e:  # binascii.Error is a ValueError
        # Only a holder of the secret could sign a bad payload: a bug, not an attack.
        raise InvalidUnsubscribeToken("the token's payload does not decode") from e
    return tenant, email


def unsubscribe_url(base_url: str, secret: str, tenant: str, email: str) -> str:
    """The link the mail carries: ``{base_url}/u/{token}``."""
    return f"{base_url.rstrip('/')}{UNSUBSCRIBE_PATH}/{make_token(secret, tenant, email)}"


def list_unsubscribe_headers(base_url: str, secret: str, tenant: str, email: str) -> dict[str, str]:
    """The RFC 2369 and RFC 8058 headers of one recipient's mail."""
    return {
        "List-Unsubscribe": f"<{unsubscribe_url(base_url, secret, tenant, email)}>",
        "List-Unsubscribe-Post": ONE_CLICK,
    }
