"""Callback signing secrets (Standard Webhooks): one per tenant, rotatable; and the callback
URLs of the tenant that answered 410 Gone.

    webhook_secrets  {_id: <tenant>, secret: "whsec_...", created_at, revealed,
                      previous_secret, previous_until, disabled_urls: [<url>, ...]}

A secret is ``whsec_`` and the base64 of 32 random bytes, the scheme's own format, so
``standardwebhooks.Webhook(secret)`` takes it as it is. It is stored as it is, not hashed:
the tracker needs it to sign.

- Made on first need: the tenant's first callback (``ensure_secret``), or by
  ``rotate_secret`` (``POST /api/v1/webhook-secret/rotate``).
- Rotating replaces it and keeps the previous one signing beside it until ``previous_until``
  (the grace period, 24 h by default): during it every callback carries both signatures,
  space-separated in ``webhook-signature``, so a receiver switches secrets at its own pace.
  Rotating again within a grace period ends it: only the secret being replaced stays.
- Shown exactly once: in the answer to the rotation that made it; a secret the platform made
  on first need, in the answer to the first ``GET /api/v1/webhook-secret`` after
  (``reveal``, a conditional update on ``revealed``). Never again after that: a lost secret
  is replaced by rotating.
- A callback URL that answered 410 Gone is disabled for the tenant (``disable_url``): later
  callbacks to it are recorded as skipped, not sent. Rotating the secret enables every
  disabled URL again: a receiver that went away comes back set up anew, with the new secret.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Final

import msgspec
from pymongo.errors import DuplicateKeyError
from standardwebhooks import Webhook

from shared.clock import stored_now
from shared.documents import from_document, to_document
from shared.errors import StoreUnavailable
from shared.store import Store, store_reachable

__all__ = [
    "SECRET_PREFIX",
    "WebhookSecret",
    "disable_url",
    "ensure_secret",
    "find_secret",
    "new_secret",
    "reveal_secret",
    "rotate_secret",
    "sign",
    "signing_secrets",
]

SECRET_PREFIX: Final = "whsec_"  # noqa: S105 -- the scheme's prefix, not a secret
_SECRET_BYTES: Final = 32
# Concurrent rotations of one tenant: each re-reads and tries again, a few times.
_ROTATION_TRIES: Final = 5


class WebhookSecret(msgspec.Struct, frozen=True, kw_only=True):
    id: str = msgspec.field(name="_id")  # the tenant
    secret: str
    created_at: datetime
    # Whether an answer has carried ``secret`` (see the module's docstring).
    revealed: bool = False
    # The secret ``secret`` replaced, signing too until ``previous_until``.
    previous_secret: str | None = None
    previous_until: datetime | None = None
    disabled_urls: list[str] = []


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_SECRET_BYTES)).decode("ascii")


def signing_secrets(stored: WebhookSecret, now: datetime) -> list[str]:
    """The secrets a callback is signed with at ``now``: the current one, and the previous
    one while its grace period lasts."""
    found = [stored.secret]
    if stored.previous_secret and stored.previous_until and now < stored.previous_until:
        found.append(stored.previous_secret)
    return found


def sign(keys: list[str], msg_id: str, at: datetime, body: str) -> str:
    """The ``webhook-signature`` header: ``v1,<base64 HMAC-SHA256 of id.timestamp.body>``
    for each secret, space-separated; ``at`` is the ``webhook-timestamp`` (whole seconds)."""
    # standardwebhooks reads ``at`` as UTC whatever its zone: hand it UTC.
    utc = at.astimezone(UTC)
    return " ".join(Webhook(key).sign(msg_id, utc, body) for key in keys)


async def find_secret(store: Store, tenant: str) -> WebhookSecret | None:
    with store_reachable("read webhook secret"):
        raw = await store.webhook_secrets.find_one({"_id": tenant})
    return None if raw is None else from_document(raw, WebhookSecret)


async def ensure_secret(store: Store, tenant: str) -> WebhookSecret:
    """The tenant's secret, made now if it has none (not revealed: see ``reveal_secret``)."""
    found = await find_secret(store, tenant)
    if found is not None:
        return found
    made = WebhookSecret(id=tenant, secret=new_secret(), created_at=stored_now())
    # Another replica may make it first (DuplicateKeyError): theirs is the one.
    with store_reachable("create webhook secret"), contextlib.suppress(DuplicateKeyError):
        await store.webhook_secrets.insert_one(to_document(made))
    found = await find_secret(store, tenant)
    assert found is not None  # inserted above, by us or by another
    return found


async def rotate_secret(store: Store, tenant: str, grace: timedelta) -> WebhookSecret:
    """A new secret for the tenant (its first, if it has none), revealed by this call's
    answer; the one it replaces keeps signing for ``grace``. Disabled URLs are enabled."""
    for _ in range(_ROTATION_TRIES):
        current = await find_secret(store, tenant)
        now = stored_now()
        made = WebhookSecret(id=tenant, secret=new_secret(), created_at=now, revealed=True)
        with store_reachable("rotate webhook secret"):
            if current is None:
                try:
                    await store.webhook_secrets.insert_one(to_document(made))
                except DuplicateKeyError:
                    continue  # made meanwhile: rotate that one
                return made
            made = msgspec.structs.replace(
                made, previous_secret=current.secret, previous_until=now + grace
            )
            replaced = await store.webhook_secrets.replace_one(
                {"_id": tenant, "secret": current.secret}, to_document(made)
            )
        if replaced.matched_count == 1:
            return made
    raise StoreUnavailable(f"webhook secret of {tenant}: rotated concurrently, gave up")


async def reveal_secret(store: Store, tenant: str) -> str | None:
    """The tenant's secret if no answer has carried it yet (then never again), else None."""
    found = await find_secret(store, tenant)
    if found is None or found.revealed:
        return None
    with store_reachable("reveal webhook secret"):
        marked = await store.webhook_secrets.update_one(
            {"_id": tenant, "secret": found.secret, "revealed": False},
            {"$set": {"revealed": True}},
        )
    return found.secret if marked.matched_count == 1 else None


async def disable_url(store: Store, tenant: str, url: str) -> None:
    """Send no more callbacks to ``url`` for the tenant, until its next rotation."""
    with store_reachable("disable callback URL"):
        await store.webhook_secrets.update_one(
            {"_id": tenant}, {"$addToSet": {"disabled_urls": url}}
        )
