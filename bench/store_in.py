"""What a ``$in`` of N ids costs the store per document it reads or updates, by N; beside
it, N updates by ``_id`` in one ``bulk_write``.

    .venv/bin/python -m bench.store_in [--messages 8000]

Starts the store (the launcher, as ``make run`` does), writes ``--messages`` messages as
ingest does (the same indexes), then reads and updates them by ``_id: {$in}`` lists of
each size, in order, and prints the milliseconds per document; then updates them again by
one ``UpdateOne`` per id, N to a ``bulk_write`` (one command, like the ``$in``). On
SecantusDB 0.7 the cost per document of a ``$in`` grows with the list (it goes through the
list for each document), which is why ``shared.store.MAX_IN`` cuts lists into pieces; on
MongoDB it should stay flat.
"""

from __future__ import annotations

import argparse
import time

from pymongo import UpdateOne

from bench.scratch import insert_messages, on_own_store
from shared.documents import message_id
from shared.status import MessageStatus
from shared.store import MAX_IN, Store

DB = "bench_store_in"
SIZES = (50, 100, 250, 500, 1000, 2000)


async def measure(store: Store, n: int) -> list[tuple[int, float, float, float]]:
    await insert_messages(store, "tx", range(n), MessageStatus.READY_TO_SEND)
    return [await _one_size(store, n, size) for size in SIZES]


async def _one_size(store: Store, n: int, size: int) -> tuple[int, float, float, float]:
    """Milliseconds per document read, per document updated, by lists of ``size``, and per
    document updated by ``size`` updates of one id in a ``bulk_write``."""
    lists = [
        [message_id("tx", row) for row in range(i, min(i + size, n))] for i in range(0, n, size)
    ]
    began = time.perf_counter()
    read = 0
    for ids in lists:
        read += len(await store.messages.find({"_id": {"$in": ids}}).to_list(None))
    per_read = (time.perf_counter() - began) / read * 1e3
    began = time.perf_counter()
    updated = 0
    for ids in lists:
        result = await store.messages.update_many(
            {"_id": {"$in": ids}}, {"$set": {"attempt_id": f"by-{size}"}}
        )
        updated += result.modified_count
    per_update = (time.perf_counter() - began) / updated * 1e3
    began = time.perf_counter()
    updated = 0
    for ids in lists:
        written = await store.messages.bulk_write(
            [UpdateOne({"_id": i}, {"$set": {"attempt_id": f"one-{size}"}}) for i in ids],
            ordered=False,
        )
        updated += written.modified_count
    per_one = (time.perf_counter() - began) / updated * 1e3
    return size, per_read, per_update, per_one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=8000)
    args = parser.parse_args()
    rows = on_own_store(DB, lambda store: measure(store, args.messages))
    print(f"$in list size vs store cost, {args.messages:,} messages (MAX_IN = {MAX_IN})")
    print(f"{'ids per $in':>12} {'read ms/doc':>12} {'update ms/doc':>14} {'by _id ms/doc':>14}")
    for size, per_read, per_update, per_one in rows:
        print(f"{size:>12,} {per_read:>12.3f} {per_update:>14.3f} {per_one:>14.3f}")
    first, last = rows[0], rows[-1]
    print(
        f"{last[0]:,} ids vs {first[0]:,}: reads x{last[1] / first[1]:.1f}, "
        f"updates x{last[2] / first[2]:.1f} per document"
    )


if __name__ == "__main__":
    main()
