"""The gateway's reads and writes of the store, with PyMongo's errors converted at the edge.

A store that cannot be reached becomes ``StoreUnavailable`` (the API answers 503); nothing
above this module sees a PyMongo exception. Pages are read by key ranges on the indexes of
``shared.indexes`` — never with a top-level ``$or``, which the embedded store answers by
scanning every document.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any, Final

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from shared.clock import stored_now
from shared.documents import (
    IdempotencyRecord,
    Message,
    StoredRowError,
    Suppression,
    Template,
    Transaction,
    from_document,
    to_document,
)
from shared.status import IdempotencyState, MessageStatus, TxStatus
from shared.store import Store, store_reachable

__all__ = [
    "claim_idempotency_key",
    "complete_idempotency_key",
    "delete_suppression",
    "drop_expired_idempotency_key",
    "find_idempotency_key",
    "find_suppression",
    "find_template",
    "find_transaction",
    "insert_new_transaction",
    "insert_suppression",
    "insert_template",
    "insert_transaction",
    "mark_cancel_requested",
    "mark_retried",
    "page_messages",
    "page_newest",
    "page_row_errors",
    "page_suppressions",
    "page_transactions",
    "release_idempotency_key",
    "shift_schedule",
    "utc_now",
]

# ``page_messages``' row windows: the first is the page's size (at least this), each one
# that leaves the page short doubles, up to the largest.
_SMALLEST_WINDOW: Final = 64
_LARGEST_WINDOW: Final = 8192
# ``page_suppressions``' windows of time, the same way.
_FIRST_SPAN: Final = timedelta(seconds=1)
_LARGEST_SPAN: Final = timedelta(days=32)
_MILLISECOND: Final = timedelta(milliseconds=1)


def utc_now() -> datetime:
    """Now, to the millisecond: what the store keeps, so what we answer equals what we read."""
    return stored_now()


async def insert_template(store: Store, template: Template) -> None:
    with store_reachable("insert template"):
        await store.templates.insert_one(to_document(template))


async def find_template(store: Store, tenant: str, template_id: str) -> Template | None:
    with store_reachable("find template"):
        raw = await store.templates.find_one({"_id": template_id, "tenant": tenant})
    return None if raw is None else from_document(raw, Template)


async def insert_transaction(store: Store, tx: Transaction) -> None:
    with store_reachable("insert transaction"):
        await store.transactions.insert_one(to_document(tx))


async def insert_new_transaction(store: Store, tx: Transaction) -> bool:
    """Insert ``tx``; False when a transaction with its ``_id`` is there already (a retry
    transaction's id is derived from the one it retries: a second insert is a repeat)."""
    with store_reachable("insert transaction"):
        try:
            await store.transactions.insert_one(to_document(tx))
        except DuplicateKeyError:
            return False
    return True


async def mark_retried(store: Store, tx: Transaction, retry_id: str) -> None:
    """Record on ``tx`` the transaction that retries its failed messages."""
    with store_reachable("mark retried"):
        await store.transactions.update_one(
            {"_id": tx.id, "tenant": tx.tenant}, {"$set": {"retried_as": retry_id}}
        )


async def find_transaction(store: Store, tenant: str, transaction_id: str) -> Transaction | None:
    with store_reachable("find transaction"):
        raw = await store.transactions.find_one({"_id": transaction_id, "tenant": tenant})
    return None if raw is None else from_document(raw, Transaction)


async def mark_cancel_requested(
    store: Store, tenant: str, transaction_id: str, statuses: Collection[TxStatus], now: datetime
) -> bool:
    """Set ``cancel_requested_at`` if the transaction is in one of ``statuses`` and has none
    yet; False when it did not match."""
    with store_reachable("request cancel"):
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
    with store_reachable("reschedule"):
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
    with store_reachable("claim idempotency key"):
        try:
            await store.idempotency_keys.insert_one(to_document(record))
        except DuplicateKeyError:
            return False
    return True


async def insert_suppression(store: Store, suppression: Suppression) -> bool:
    """Put an address on its tenant's list; False when it was there already (its first
    reason, a bounce say, is kept)."""
    with store_reachable("insert suppression"):
        try:
            await store.suppressions.insert_one(to_document(suppression))
        except DuplicateKeyError:
            return False
    return True


async def find_suppression(store: Store, tenant: str, record_id: str) -> Suppression | None:
    with store_reachable("find suppression"):
        raw = await store.suppressions.find_one({"_id": record_id, "tenant": tenant})
    return None if raw is None else from_document(raw, Suppression)


async def delete_suppression(store: Store, tenant: str, record_id: str) -> bool:
    """Take an address off its tenant's list; False when it was not on it."""
    with store_reachable("delete suppression"):
        result = await store.suppressions.delete_one({"_id": record_id, "tenant": tenant})
    return result.deleted_count == 1


async def page_suppressions(
    store: Store, tenant: str, *, after: tuple[datetime, str] | None, limit: int
) -> list[Suppression]:
    """Up to ``limit`` of a tenant's suppressions, newest first by (created_at, _id), after
    ``after`` (a list can hold 100,000s of bounced addresses: see ``page_newest``)."""
    found = await page_newest(
        store.suppressions,
        {"tenant": tenant},
        field="created_at",
        after=after,
        limit=limit,
        what="list suppressions",
    )
    return [from_document(raw, Suppression) for raw in found]


async def page_newest(
    collection: AsyncCollection[dict[str, Any]],
    base: dict[str, Any],
    *,
    field: str,
    after: tuple[datetime, str] | None,
    limit: int,
    what: str,
) -> list[dict[str, Any]]:
    """Up to ``limit`` documents matching ``base``, newest first by (``field``, _id), after
    ``after``, on an index that ends (``field`` desc, _id desc).

    Read as ``page_messages`` reads rows, since the embedded store reads every document a
    query matches before it sorts and cuts: the rest of the instant ``after`` ended in, then
    windows of time going back, ``[high - window, high)``, from ``_FIRST_SPAN`` doubling to
    ``_LARGEST_SPAN`` while the page is short; an empty window that large asks when the next
    older document is.
    """
    order = [(field, DESCENDING), ("_id", DESCENDING)]
    found: list[dict[str, Any]] = []
    high: datetime | None = None
    span = _FIRST_SPAN
    with store_reachable(what):
        if after is not None:
            high, last_id = after
            query = {**base, field: high, "_id": {"$lt": last_id}}
            found += await collection.find(query).sort(order).to_list(limit)
        while len(found) < limit:
            low = (utc_now() if high is None else high) - span
            # The first window is open above: a document a clock ahead of ours wrote is in it.
            newer: dict[str, Any] = {"$gte": low} if high is None else {"$gte": low, "$lt": high}
            part = (
                await collection.find({**base, field: newer})
                .sort(order)
                .to_list(limit - len(found))
            )
            found += part
            if part or span < _LARGEST_SPAN:
                high, span = low, min(span * 2, _LARGEST_SPAN)
                continue
            older = (
                await collection.find({**base, field: {"$lt": low}}, {field: 1})
                .sort(order)
                .to_list(1)
            )
            if not older:
                break
            high, span = older[0][field] + _MILLISECOND, _FIRST_SPAN
    return found


async def find_idempotency_key(store: Store, record_id: str) -> IdempotencyRecord | None:
    with store_reachable("find idempotency key"):
        raw = await store.idempotency_keys.find_one({"_id": record_id})
    return None if raw is None else from_document(raw, IdempotencyRecord)


async def complete_idempotency_key(store: Store, record_id: str, transaction_id: str) -> None:
    """PENDING -> DONE, only while the claim is still the one for ``transaction_id``."""
    with store_reachable("complete idempotency key"):
        await store.idempotency_keys.update_one(
            {"_id": record_id, "transaction_id": transaction_id},
            {"$set": {"state": IdempotencyState.DONE}},
        )


async def release_idempotency_key(store: Store, record_id: str, transaction_id: str) -> None:
    """Remove a claim still PENDING for ``transaction_id``: its transaction was never made."""
    with store_reachable("release idempotency key"):
        await store.idempotency_keys.delete_one(
            {
                "_id": record_id,
                "transaction_id": transaction_id,
                "state": IdempotencyState.PENDING,
            }
        )


async def drop_expired_idempotency_key(store: Store, record_id: str, now: datetime) -> None:
    """Remove a record past its ``expires_at`` that the TTL sweep has not reached yet."""
    with store_reachable("drop expired idempotency key"):
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
    with store_reachable("list transactions"):
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
    with store_reachable("list row errors"):
        for query in queries:
            if len(found) >= limit:
                break
            found += await store.row_errors.find(query).sort(order).to_list(limit - len(found))
    return [from_document(raw, StoredRowError) for raw in found]


async def page_messages(
    store: Store,
    transaction_id: str,
    *,
    status: MessageStatus | None,
    after: int,
    limit: int,
) -> list[Message]:
    """Up to ``limit`` messages of a transaction by row, after row ``after``; only those in
    ``status`` when given.

    Read in windows of rows, ``(low, low + window]``, on the index (transaction_id, status,
    row) or (transaction_id, row): the embedded store reads every document a query matches
    before it sorts and cuts (ARCHITECTURE §6: 0.6 s for a page of 20,000 messages asked
    with ``row > after`` alone), while a window's cost is the messages in it. A window that
    leaves the page short doubles, up to ``_LARGEST_WINDOW`` rows; an empty one that large
    asks where the next matching row is and goes on from there (at the end: nothing, at
    once).
    """
    base: dict[str, Any] = {"transaction_id": transaction_id}
    if status is not None:
        base["status"] = status
    order = [("row", ASCENDING)]
    first = max(limit, _SMALLEST_WINDOW)
    low, window = after, first
    found: list[dict[str, Any]] = []
    with store_reachable("list messages"):
        while len(found) < limit:
            high = low + window
            part = (
                await store.messages.find({**base, "row": {"$gt": low, "$lte": high}})
                .sort(order)
                .to_list(limit - len(found))
            )
            found += part
            if part or window < _LARGEST_WINDOW:
                low, window = high, min(window * 2, _LARGEST_WINDOW)
                continue
            following = (
                await store.messages.find({**base, "row": {"$gt": high}}, {"row": 1})
                .sort(order)
                .to_list(1)
            )
            if not following:
                break
            low, window = int(following[0]["row"]) - 1, first
    return [from_document(raw, Message) for raw in found]
