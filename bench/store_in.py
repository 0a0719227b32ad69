"""What a ``$in`` of N ids costs the store per document it reads or updates, by N; beside
it, N updates by ``_id`` in one ``bulk_write``.

    .venv/bin/python -m bench.store_in [--messages 8000]

Starts the store (the launcher, as ``make run`` does), writes ``--messages`` messages as
ingest does (the same indexes), then reads and updates them by ``_id: {$in}`` lists of
each size, in order, and prints the milliseconds per document; then updates them again by
one ``UpdateOne`` per id, N to a ``bulk_write`` (one command, like the ``$in``); then
reads and updates them by the same N ids as a range of rows (``rows:``, the filters of
shared/message_ranges.py). On SecantusDB 0.7 the cost per document of a ``$in`` grows with
the list (it goes through the list for each document), which is why ``shared.store.MAX_IN``
cuts lists into pieces, and why messages are read and moved by runs of rows where they
can be; a range's cost per document stays flat. On MongoDB all should stay flat.

    .venv/bin/python -m bench.store_in --guarded [--messages 20000]

Updates runs of 500 rows of one transaction of ``--messages`` three ways: a range beside
``status`` (bounded by ``transaction_status_row``), a range beside ``status`` and the
sender's ``attempt_id`` guard (which no index bounds: the store walks every message of
the transaction), and what ``message_filters`` makes of the guarded one (``$in``
pieces). Run it at two sizes: the guarded range's cost grows with the transaction.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pymongo import UpdateOne

from bench.scratch import insert_messages, on_own_store
from shared.documents import message_id
from shared.message_ranges import message_filters
from shared.status import MessageStatus
from shared.store import MAX_IN, Store

DB = "bench_store_in"
SIZES = (50, 100, 250, 500, 1000, 2000)


# ms per document: read and update by ``$in``, update by one ``UpdateOne`` per id in a
# ``bulk_write``, read and update by the run of rows (shared/message_ranges.py).
_Costs = tuple[int, float, float, float, float, float]


async def measure(store: Store, n: int) -> list[_Costs]:
    await insert_messages(store, "tx", range(n), MessageStatus.READY_TO_SEND)
    return [await _one_size(store, n, size) for size in SIZES]


async def _one_size(store: Store, n: int, size: int) -> _Costs:
    """Milliseconds per document of each way, by lists of ``size`` ids (consecutive rows)."""
    lists = [
        [message_id("tx", row) for row in range(i, min(i + size, n))] for i in range(0, n, size)
    ]
    ranges = [message_filters(ids) for ids in lists]

    async def per_document(
        step: Callable[[list[str], list[dict[str, Any]]], Awaitable[int]],
    ) -> float:
        began = time.perf_counter()
        done = 0
        for ids, filters in zip(lists, ranges, strict=True):
            done += await step(ids, filters)
        return (time.perf_counter() - began) / done * 1e3

    async def read_in(ids: list[str], _: list[dict[str, Any]]) -> int:
        return len(await store.messages.find({"_id": {"$in": ids}}).to_list(None))

    async def update_in(ids: list[str], _: list[dict[str, Any]]) -> int:
        result = await store.messages.update_many(
            {"_id": {"$in": ids}}, {"$set": {"attempt_id": f"by-{size}"}}
        )
        return result.modified_count

    async def update_each(ids: list[str], _: list[dict[str, Any]]) -> int:
        written = await store.messages.bulk_write(
            [UpdateOne({"_id": i}, {"$set": {"attempt_id": f"one-{size}"}}) for i in ids],
            ordered=False,
        )
        return written.modified_count

    async def read_rows(_: list[str], filters: list[dict[str, Any]]) -> int:
        return sum([len(await store.messages.find(f).to_list(None)) for f in filters])

    async def update_rows(_: list[str], filters: list[dict[str, Any]]) -> int:
        updates = [
            await store.messages.update_many(f, {"$set": {"attempt_id": f"rows-{size}"}})
            for f in filters
        ]
        return sum(u.modified_count for u in updates)

    return (
        size,
        await per_document(read_in),
        await per_document(update_in),
        await per_document(update_each),
        await per_document(read_rows),
        await per_document(update_rows),
    )


async def measure_guarded(store: Store, n: int) -> dict[str, float]:
    """Milliseconds per document of updating runs of 500 rows, by the shape of filter."""
    ids = await insert_messages(store, "tx", range(n), MessageStatus.SENDING)
    await store.messages.update_many({}, {"$set": {"attempt_id": "a"}})
    runs = [ids[i : i + 500] for i in range(n // 2, min(n, n // 2 + 2000), 500)]
    status = {"status": MessageStatus.SENDING}
    guarded = {**status, "attempt_id": "a"}
    # Each shape: the query beside the filters, and the query message_filters plans for.
    shapes: dict[str, tuple[dict[str, Any], dict[str, Any] | None]] = {
        "range, status": (status, None),
        "range, status and attempt_id": (guarded, None),
        "message_filters, guarded": (guarded, guarded),
    }
    spent: dict[str, float] = {}
    for name, (query, planned) in shapes.items():
        began = time.perf_counter()
        for run in runs:
            for where in message_filters(run, planned):
                await store.messages.update_many(
                    {**where, **query}, {"$set": {"lease_until": name}}
                )
        spent[name] = (time.perf_counter() - began) / sum(map(len, runs)) * 1e3
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=8000)
    parser.add_argument("--guarded", action="store_true", help="the guarded-update shapes")
    args = parser.parse_args()
    if args.guarded:
        spent = on_own_store(DB, lambda store: measure_guarded(store, args.messages))
        print(f"updates of runs of 500 rows in a transaction of {args.messages:,} messages")
        for name, ms in spent.items():
            print(f"  {name:<30} {ms:>7.3f} ms/doc")
        return
    rows = on_own_store(DB, lambda store: measure(store, args.messages))
    print(f"$in list size vs store cost, {args.messages:,} messages (MAX_IN = {MAX_IN})")
    print(
        f"{'ids per $in':>12} {'read ms/doc':>12} {'update ms/doc':>14} {'by _id ms/doc':>14}"
        f" {'rows: read':>11} {'rows: update':>13}"
    )
    for size, per_read, per_update, per_one, rows_read, rows_update in rows:
        print(
            f"{size:>12,} {per_read:>12.3f} {per_update:>14.3f} {per_one:>14.3f}"
            f" {rows_read:>11.3f} {rows_update:>13.3f}"
        )
    first, last = rows[0], rows[-1]
    print(
        f"{last[0]:,} ids vs {first[0]:,}: reads x{last[1] / first[1]:.1f}, "
        f"updates x{last[2] / first[2]:.1f} per document"
    )


if __name__ == "__main__":
    main()
