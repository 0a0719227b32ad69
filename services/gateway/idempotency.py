"""``Idempotency-Key`` on submissions: a retried request gets the first one's answer.

Whether two requests are the same is known only once the whole body has arrived (the
fingerprint covers the file's content), so every request with a key streams its file first
and then claims the key by inserting ``<tenant>:<key>`` into ``idempotency_keys``:

- the insert succeeds: the key is ours. The submission records its transaction, announces
  it and marks the key DONE (``release`` instead if the transaction could not be recorded);
- the key is held with another fingerprint: 409 ``IDEMPOTENCY_KEY_REUSED``;
- the key is DONE with our fingerprint: a replay. The caller answers 200 with the stored
  body and throws away its own upload, so nothing is kept twice;
- the key is PENDING with our fingerprint: a concurrent duplicate. We poll until it is DONE
  (a replay) or released (we claim it again); still PENDING after ``wait_seconds`` (the
  ``idempotency_wait_seconds`` setting), it is 409 ``IDEMPOTENCY_KEY_IN_USE`` — unless its
  transaction exists (the holder stopped between recording and marking: we mark it) or it
  is older than ``ABANDONED_AFTER`` without one (the holder died before recording: we
  remove it and claim again).

Records are kept ``KEEP_FOR`` (at least the 24 h the API promises); the TTL index on
``expires_at`` removes them, and a record past its time that the sweep has not reached yet
counts as absent.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

import msgspec

from services.gateway.errors import ApiError, Code
from services.gateway.records import (
    claim_idempotency_key,
    complete_idempotency_key,
    drop_expired_idempotency_key,
    find_idempotency_key,
    find_transaction,
    release_idempotency_key,
    utc_now,
)
from shared.documents import IdempotencyRecord
from shared.log import get_logger
from shared.status import IdempotencyState

if TYPE_CHECKING:
    from shared.store import Store

__all__ = [
    "ABANDONED_AFTER",
    "HEADER",
    "KEEP_FOR",
    "MAX_KEY_CHARS",
    "check_key",
    "claim",
    "complete",
    "fingerprint",
    "release",
]

log = get_logger("gateway.idempotency")

HEADER: Final = "Idempotency-Key"
MAX_KEY_CHARS: Final = 255
KEEP_FOR: Final = timedelta(hours=24)
_POLL_SECONDS: Final = 0.05
# Claiming to marking DONE takes one insert and two publishes; a PENDING claim this old with
# no transaction belongs to a gateway that died in between.
ABANDONED_AFTER: Final = timedelta(minutes=5)


def check_key(value: str | None) -> str | None:
    """The header's key, or None without one: 1-255 printable ASCII characters."""
    if value is None:
        return None
    if not 0 < len(value) <= MAX_KEY_CHARS or not all(" " <= c <= "~" for c in value):
        raise ApiError(
            Code.INVALID_IDEMPOTENCY_KEY,
            f"{HEADER} must be 1 to {MAX_KEY_CHARS} printable ASCII characters",
            details={"header": HEADER},
        )
    return value


def fingerprint(request: msgspec.Struct) -> str:
    """sha256 of the request's canonical JSON (keys sorted, so field order does not count)."""
    return hashlib.sha256(msgspec.json.encode(request, order="sorted")).hexdigest()


def _record_id(tenant: str, key: str) -> str:
    # Tenant names hold no ':' (shared.api_keys), so the pair is unambiguous.
    return f"{tenant}:{key}"


def _reused(key: str) -> ApiError:
    return ApiError(
        Code.IDEMPOTENCY_KEY_REUSED,
        f"this {HEADER} was used with a different request",
        details={"header": HEADER, "idempotency_key": key},
    )


async def claim(
    store: Store,
    tenant: str,
    key: str,
    *,
    fingerprint: str,
    transaction_id: str,
    response: dict[str, Any],
    wait_seconds: float,
) -> IdempotencyRecord | None:
    """None: the key is ours for ``transaction_id`` (then ``complete`` or ``release`` it).

    A record: the DONE submission this request repeats; answer with its ``response``.
    Raises ``ApiError`` (409) for a key used with another request or still in use.
    """
    now = utc_now()
    mine = IdempotencyRecord(
        id=_record_id(tenant, key),
        tenant=tenant,
        state=IdempotencyState.PENDING,
        fingerprint=fingerprint,
        transaction_id=transaction_id,
        response=response,
        created_at=now,
        expires_at=now + KEEP_FOR,
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    while True:
        if await claim_idempotency_key(store, mine):
            return None
        held = await find_idempotency_key(store, mine.id)
        now = utc_now()
        if held is not None and held.expires_at <= now:
            await drop_expired_idempotency_key(store, mine.id, now)
            continue
        if held is not None:
            if held.fingerprint != fingerprint:
                raise _reused(key)
            if held.state is IdempotencyState.DONE:
                return held
        if loop.time() >= deadline:
            if held is None or not await _take_over(store, held):
                raise ApiError(
                    Code.IDEMPOTENCY_KEY_IN_USE,
                    f"a request with this {HEADER} is still being processed; retry shortly",
                    details={"header": HEADER, "idempotency_key": key},
                    headers={"Retry-After": "1"},
                )
            continue
        await asyncio.sleep(_POLL_SECONDS)


async def _take_over(store: Store, held: IdempotencyRecord) -> bool:
    """A claim left PENDING past the wait: True when we settled it (see the module)."""
    if await find_transaction(store, held.tenant, held.transaction_id) is not None:
        log.warning("idempotency key left pending; marking it done", key_id=held.id)
        await complete_idempotency_key(store, held.id, held.transaction_id)
        return True
    if held.created_at <= utc_now() - ABANDONED_AFTER:
        log.warning("idempotency key abandoned; releasing it", key_id=held.id)
        await release_idempotency_key(store, held.id, held.transaction_id)
        return True
    return False


async def complete(store: Store, tenant: str, key: str, transaction_id: str) -> None:
    await complete_idempotency_key(store, _record_id(tenant, key), transaction_id)


async def release(store: Store, tenant: str, key: str, transaction_id: str) -> None:
    await release_idempotency_key(store, _record_id(tenant, key), transaction_id)
