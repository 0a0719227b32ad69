"""API keys (ARCHITECTURE §8): made here, stored only as their SHA-256, found by it.

A key is ``ep_<mode>_<43 URL-safe characters>`` (256 random bits) and is shown once, when it
is created. The store keeps ``sha256(key)`` as the document's ``_id``: authenticating is one
read by ``_id``, and a copy of the database holds no usable key. A fast unsalted hash is
enough for a secret of 256 random bits — there is nothing to guess — as with GitHub's and
Stripe's tokens. ``key_id`` is a key's public name (listing, revoking) and ``prefix`` its
first characters, for a person to recognise it by.

The gateway authenticates with ``find_active_key``; the CLI (the operator's path, straight to
the store) and the gateway's admin endpoints create, list and revoke.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Final

import msgspec
from pymongo import DESCENDING

from shared.clock import stored_now
from shared.documents import from_document, to_document
from shared.errors import InputError
from shared.store import Store, store_reachable

__all__ = [
    "KEY_PREFIX",
    "ApiKey",
    "KeyMode",
    "create_key",
    "find_active_hash",
    "find_active_key",
    "hash_key",
    "list_keys",
    "revoke_key",
]

KEY_PREFIX: Final = "ep_"
# Shown in listings: "ep_live_" and four characters of the secret.
_SHOWN_CHARS: Final = 12
# Tenants name S3 prefixes and log fields: keep them plain.
_TENANT: Final = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")


class KeyMode(StrEnum):
    LIVE = "live"
    # The whole pipeline, but the mailbox simulator's outcomes instead of real mail.
    TEST = "test"


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    """A stored key: everything but the key itself."""

    id: str = msgspec.field(name="_id")  # sha256 of the key, hex
    key_id: str
    prefix: str
    tenant: str
    mode: KeyMode
    admin: bool = False
    label: str | None = None
    created_at: datetime
    revoked_at: datetime | None = None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


async def create_key(
    store: Store,
    *,
    tenant: str,
    mode: KeyMode = KeyMode.LIVE,
    admin: bool = False,
    label: str | None = None,
) -> tuple[str, ApiKey]:
    """A new key for ``tenant``: the key (the only time it exists) and what is stored."""
    if not _TENANT.fullmatch(tenant):
        raise InputError(
            f"tenant {tenant!r}: 1-63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit"
        )
    key = f"{KEY_PREFIX}{mode}_{secrets.token_urlsafe(32)}"
    stored = ApiKey(
        id=hash_key(key),
        key_id=uuid.uuid4().hex[:16],
        prefix=key[:_SHOWN_CHARS],
        tenant=tenant,
        mode=mode,
        admin=admin,
        label=label,
        created_at=stored_now(),
    )
    with store_reachable("create API key"):
        await store.api_keys.insert_one(to_document(stored))
    return key, stored


async def find_active_key(store: Store, key: str) -> ApiKey | None:
    """The stored key ``key`` is, unless it is unknown or revoked."""
    return await find_active_hash(store, hash_key(key))


async def find_active_hash(store: Store, hashed: str) -> ApiKey | None:
    """The stored key whose hash is ``hashed``, unless it is unknown or revoked."""
    with store_reachable("find API key"):
        raw = await store.api_keys.find_one({"_id": hashed})
    if raw is None:
        return None
    found = from_document(raw, ApiKey)
    return None if found.revoked_at is not None else found


async def list_keys(store: Store, tenant: str | None = None) -> list[ApiKey]:
    """Every key of ``tenant`` (of every tenant if None), newest first, revoked ones too."""
    query = {} if tenant is None else {"tenant": tenant}
    with store_reachable("list API keys"):
        found = await store.api_keys.find(query).sort("created_at", DESCENDING).to_list(None)
    return [from_document(raw, ApiKey) for raw in found]


async def revoke_key(store: Store, key_id: str, *, tenant: str | None = None) -> ApiKey | None:
    """Revoke a key (again is fine: it keeps its first revocation time); None if there is
    no such key — or it belongs to a tenant other than ``tenant``, which looks the same."""
    query: dict[str, str] = {"key_id": key_id}
    if tenant is not None:
        query["tenant"] = tenant
    with store_reachable("revoke API key"):
        raw = await store.api_keys.find_one(query)
        if raw is None:
            return None
        found = from_document(raw, ApiKey)
        if found.revoked_at is not None:
            return found
        at = stored_now()
        await store.api_keys.update_one(
            {"_id": found.id, "revoked_at": None}, {"$set": {"revoked_at": at}}
        )
    return msgspec.structs.replace(found, revoked_at=at)
