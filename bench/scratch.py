"""A scratch database for the store benchmarks: a store of their own (or the run's), the
production indexes, seeded messages, and nothing left behind."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from shared.documents import Message, message_id, to_document
from shared.indexes import ensure_indexes
from shared.status import MessageStatus
from shared.store import Store, connect_store
from stack.launcher import Stack

__all__ = ["insert_messages", "on_own_store", "on_scratch"]

T = TypeVar("T")
_BATCH = 500  # ingest's default batch: one insert_many each


async def on_scratch(uri: str, db: str, steps: Callable[[Store], Awaitable[T]]) -> T:
    """``steps`` on the database ``db`` of the store at ``uri``, emptied and indexed as the
    services index theirs; dropped afterwards."""
    store = await connect_store(uri, db)
    try:
        await store.client.drop_database(db)
        await ensure_indexes(store.db)
        return await steps(store)
    finally:
        await store.client.drop_database(db)
        await store.close()


def on_own_store(db: str, steps: Callable[[Store], Awaitable[T]]) -> T:
    """``on_scratch`` on a store the launcher starts for it (as ``make run`` does)."""
    with tempfile.TemporaryDirectory() as tmp:
        # Named as given, so the launcher starts no AWS servers: none is needed.
        stack = Stack(Path(tmp) / "stack", environ={"AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
        with stack as info:
            return asyncio.run(on_scratch(info.mongodb_uri, db, steps))


async def insert_messages(
    store: Store, transaction_id: str, rows: range, status: MessageStatus
) -> list[str]:
    """One message per row of ``rows``, in ``status``, inserted as ingest does (a batch
    of 500 rows per ``insert_many``); their ids, in row order."""
    now = datetime.now(UTC)
    messages = [
        Message(
            id=message_id(transaction_id, row),
            transaction_id=transaction_id,
            tenant="local",
            batch=i // _BATCH,
            row=row,
            email=f"success+{i}@simulator.amazonses.com",
            data={"name": f"U{i}"},
            status=status,
            updated_at=now,
        )
        for i, row in enumerate(rows)
    ]
    for start in range(0, len(messages), _BATCH):
        await store.messages.insert_many(
            [to_document(m) for m in messages[start : start + _BATCH]], ordered=False
        )
    return [m.id for m in messages]
