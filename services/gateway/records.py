"""The gateway's reads and writes of the store, with PyMongo's errors converted at the edge.

A store that cannot be reached becomes ``StoreUnavailable`` (the API answers 503); nothing
above this module sees a PyMongo exception. Pages are read by key ranges on the indexes of
``shared.indexes`` — never with a top-level ``$or``, which the embedded store answers by
scanning every document.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Final

from pymongo import ASCENDING, DESCENDING
from pymongo.errors import ConnectionFailure, DuplicateKeyError, PyMongoError, WTimeoutError

from shared.documents import (
    IdempotencyRecord,
    StoredRowError,
    Suppression,
    Template,
    Transaction,
    from_document,
    to_document,
)
from shared.errors import StoreUnavailable
from shared.status import IdempotencyState, TxStatus
from shared.store import Store

__all__ = [
    "claim_idempotency_key",
    "complete_idempotency_key",
    "drop_expired_idempotency_key",
    "find_idempotency_key",
    "find_template",
    "find_transaction",
    "insert_suppression",
    "insert_template",
    "insert_transaction",
    "mark_cancel_requested",
    "page_row_errors",
    "page_transactions",
    "ping_store",
    "release_idempotency_key",
    "shift_schedule",
    "utc_now",
]

_PING_TIMEOUT: Final = 2.0


@contextmanager
def _reachable(what: str) -> Iterator[None]:
    try:
        yield
    except (ConnectionFailure, WTimeoutError) as e:
        raise StoreUnavailable(f"{what}: {e}") from e


def utc_now() -> datetime:
    """Now, to the millisecond: what the store keeps, so what we answer equals what we read."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


async def insert_template(store: Store, template: Template) -> None:
    with _reachable("insert template"):
        await store.templates.insert_one(to_document(template))


async def find_template(store: Store, tenant: str, template_id: str) -> Template | None:
    with _reachable("find template"):
        raw = await store.templates.find_one({"_id": template_id, "tenant": tenant})
    return None if raw is None else from_document(raw, Template)


async def insert_transaction(store: Store, tx: Transaction) -> None:
    with _reachable("insert transaction"):
        await store.transactions.insert_one(to_document(tx))


async def find_transaction(store: Store, tenant: str, transaction_id: str) -> Transaction | None:
    with _reachable("find transaction"):
        raw = await store.transactions.find_one({"_id": transaction_id, "tenant": tenant})
    return None if raw is None else from_document(raw, Transaction)


async def mark_cancel_requested(
    store: Store, tenant: str, transaction_id: str, statuses: Collection[TxStatus], now: datetime
) -> bool:
    """Set ``cancel_requested_at`` if the transaction is in one of ``statuses`` and has none
    yet; False when it did not match."""
    with _reachable("request cancel"):
        result = await store.transactions.update_one(
            {
                "_id": transaction_id,
                "tenant": tenant,
                "status": {"$in": list(statuses)},
                "cancel_requested_at": None,
            },
            {"$set": {"cancel_requested_at": now, "updated_at": now}},
        )
    return result.matched_count == 1


async def shift_schedule(
    store: Store,
    tx: Transaction,
    *,
    send_at: datetime,
    shift_seconds: float,
    generation: int,
    now: datetime,
) -> bool:
    """Record a reschedule of ``tx`` as read (SCHEDULED, not cancelled, its schedule's
    generation): the new ``send_at``, shift and generation. False when ``tx`` changed."""
    assert tx.schedule is not None
    with _reachable("reschedule"):
        result = await store.transactions.update_one(
            {
                "_id": tx.id,
                "tenant": tx.tenant,
                "status": TxStatus.SCHEDULED,
                "cancel_requested_at": None,
                "schedule.generation": tx.schedule.generation,
            },
            {
                "$set": {
                    "send_at": send_at,
                    "schedule.shift_seconds": shift_seconds,
                    "schedule.generation": generation,
                    "updated_at": now,
                }
            },
        )
    return result.matched_count == 1


async def claim_idempotency_key(store: Store, record: IdempotencyRecord) -> bool:
    """Insert the record; False when its ``_id`` (tenant and key) is already there."""
    with _reachable("claim idempotency key"):
        try:
            await store.idempotency_keys.insert_one(to_document(record))
        except DuplicateKeyError:
            return False
    return True


async def insert_suppression(store: Store, suppression: Suppression) -> bool:
    """Put an address on its tenant's list; False when it was there already (its first
    reason, a bounce say, is kept)."""
    with _reachable("insert suppression"):
        try:
            await store.suppressions.insert_one(to_document(suppression))
        except DuplicateKeyError:
            return False
    return True


async def find_idempotency_key(store: Store, record_id: str) -> IdempotencyRecord | None:
    with _reachable("find idempotency key"):
        raw = await store.idempotency_keys.find_one({"_id": record_id})
    return None if raw is None else from_document(raw, IdempotencyRecord)


async def complete_idempotency_key(store: Store, record_id: str, transaction_id: str) -> None:
    """PENDING -> DONE, only while the claim is still the one for ``transaction_id``."""
    with _reachable("complete idempotency key"):
        await store.idempotency_keys.update_one(
            {"_id": record_id, "transaction_id": transaction_id},
            {"$set": {"state": IdempotencyState.DONE}},
        )


async def release_idempotency_key(store: Store, record_id: str, transaction_id: str) -> None:
    """Remove a claim still PENDING for ``transaction_id``: its transaction was never made."""
    with _reachable("release idempotency key"):
        await store.idempotency_keys.delete_one(
            {
                "_id": record_id,
                "transaction_id": transaction_id,
                "state": IdempotencyState.PENDING,
            }
        )


async def drop_expired_idempotency_key(store: Store, record_id: str, now: datetime) -> None:
    """Remove a record past its ``expires_at`` that the TTL sweep has not reached yet."""
    with _reachable("drop expired idempotency key"):
        await store.idempotency_keys.delete_one({"_id": record_id, "expires_at": {"$lte": now}})


async def page_transactions(
    store: Store,
    tenant: str,
    *,
    status: TxStatus | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[Transaction]:
    """Up to ``limit`` transactions, newest first by (created_at, _id), after ``after``.

    Two range reads instead of an ``$or``: the rest of the instant ``after`` ended in, then
    everything older.
    """
    base: dict[str, Any] = {"tenant": tenant}
    if status is not None:
        base["status"] = status
    order = [("created_at", DESCENDING), ("_id", DESCENDING)]
    queries: list[dict[str, Any]]
    if after is None:
        queries = [base]
    else:
        at, last_id = after
        queries = [
            {**base, "created_at": at, "_id": {"$lt": last_id}},
            {**base, "created_at": {"$lt": at}},
        ]
    found: list[dict[str, Any]] = []
    with _reachable("list transactions"):
        for query in queries:
            if len(found) >= limit:
                break
            found += await store.transactions.find(query).sort(order).to_list(limit - len(found))
    return [from_document(raw, Transaction) for raw in found]


async def page_row_errors(
    store: Store,
    transaction_id: str,
    *,
    after: tuple[int, str] | None,
    limit: int,
    code: str | None = None,
) -> list[StoredRowError]:
    """Up to ``limit`` row errors of a transaction by (row, _id), after ``after``; only
    those of ``code`` when given."""
    base: dict[str, Any] = {"transaction_id": transaction_id}
    if code is not None:
        base["error.code"] = code
    order = [("error.row", ASCENDING), ("_id", ASCENDING)]
    queries: list[dict[str, Any]]
    if after is None:
        queries = [base]
    else:
        row, last_id = after
        queries = [
            {**base, "error.row": row, "_id": {"$gt": last_id}},
            {**base, "error.row": {"$gt": row}},
        ]
    found: list[dict[str, Any]] = []
    with _reachable("list row errors"):
        for query in queries:
            if len(found) >= limit:
                break
            found += await store.row_errors.find(query).sort(order).to_list(limit - len(found))
    return [from_document(raw, StoredRowError) for raw in found]


async def ping_store(store: Store) -> bool:
    try:
        async with asyncio.timeout(_PING_TIMEOUT):
            await store.client.admin.command("ping")
    except (PyMongoError, TimeoutError):
        return False
    return True
