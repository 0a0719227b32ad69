"""What the tracker's writes for a delivered message cost the store, apart and together.

    .venv/bin/python -m bench.tracker_writes [--messages 6000]

Starts the store (the launcher, as ``make run`` does), writes ``--messages`` SENT messages
as ingest does (the same indexes), then times, in chunks of 500, by milliseconds per
message: the Send events' receipts (new, then all duplicates, as when the sender's receipts
are there), the read of the messages, and SENT -> DELIVERED with the Send and Delivery
events two ways: the move (``update_many`` by ``$in`` pieces) and the events' ``$push``
(``bulk_write``) apart, as the tracker wrote them until b86a8d9, and one ``UpdateOne`` per
message doing both, as ``move_messages(each=...)`` does now.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from pymongo import UpdateOne

from bench.scratch import insert_messages, on_own_store
from shared.documents import SendReceipt, to_document
from shared.status import MessageStatus as M
from shared.store import Store, find_in, insert_new, update_in

DB = "bench_tracker_writes"
CHUNK = 500
KINDS = ("Send", "Delivery")


async def measure(store: Store, n: int) -> dict[str, float]:
    now = datetime.now(UTC)
    ids = await insert_messages(store, "tx", range(n), M.SENT)
    chunks = [ids[i : i + CHUNK] for i in range(0, n, CHUNK)]
    events = {
        "$each": [
            {"key": kind, "kind": kind, "timestamp": now, "ses_message_id": "x" * 60}
            for kind in KINDS
        ]
    }
    spent: dict[str, float] = {}

    async def timed(name: str, step: Callable[[list[str]], Awaitable[Any]]) -> None:
        began = time.perf_counter()
        for chunk in chunks:
            await step(chunk)
        spent[name] = (time.perf_counter() - began) / n * 1e3

    async def receipts(chunk: list[str]) -> None:
        await insert_new(
            store.sends,
            [
                to_document(
                    SendReceipt(
                        id=i, transaction_id="tx", ses_message_id=f"ses-{i}", at=now, source="s"
                    )
                )
                for i in chunk
            ],
        )

    async def read(chunk: list[str]) -> None:
        [_ async for _ in find_in(store.messages, "_id", chunk)]

    async def move(chunk: list[str]) -> None:
        await update_in(
            store.messages, chunk, {"status": M.SENT}, {"$set": {"status": M.DELIVERED}}
        )

    async def push(chunk: list[str]) -> None:
        guard = {"events.key": {"$nin": list(KINDS)}}
        writes = [UpdateOne({"_id": i, **guard}, {"$push": {"events": events}}) for i in chunk]
        await store.messages.bulk_write(writes, ordered=False)

    async def together(chunk: list[str]) -> None:
        guard = {"status": M.SENT, "events.key": {"$nin": list(KINDS)}}
        update = {"$set": {"status": M.DELIVERED}, "$push": {"events": events}}
        await store.messages.bulk_write(
            [UpdateOne({"_id": i, **guard}, update) for i in chunk], ordered=False
        )

    await timed("receipts, new", receipts)
    await timed("receipts, all there already", receipts)
    await timed("read (find_in)", read)
    await timed("move (update_many)", move)
    await timed("events (bulk_write $push)", push)
    for chunk in chunks:  # SENT again, no events
        await update_in(store.messages, chunk, {}, {"$set": {"status": M.SENT, "events": []}})
    await timed("move and events in one UpdateOne each", together)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=6000)
    args = parser.parse_args()
    spent = on_own_store(DB, lambda store: measure(store, args.messages))
    print(f"the tracker's writes for {args.messages:,} delivered messages, ms per message")
    for name, ms in spent.items():
        print(f"  {name:<40} {ms:>7.3f}")
    apart = spent["move (update_many)"] + spent["events (bulk_write $push)"]
    one = spent["move and events in one UpdateOne each"]
    print(f"  move and events: apart {apart:.3f}, together {one:.3f} (x{one / apart:.2f})")


if __name__ == "__main__":
    main()
