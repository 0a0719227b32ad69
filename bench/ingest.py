"""Ingest end to end on the embedded stack, beside the store's raw insert rate, in one run.

    .venv/bin/python -m bench.ingest [ROWS] [--rss]

Submits a generated CSV (``bench.ingest_parse.make_csv``: 5 placeholder columns, 2 % invalid
rows) through the API with a send time an hour away, so nothing is sent and the clock
measures ingest alone: from the start of the upload until the transaction leaves PROCESSING
(every message stored). Then it inserts the same message documents straight into the same
store, into a collection with the same indexes, with ``insert_many`` in batches of the same
size: the floor ingest cannot beat. With
``--rss`` it also runs 10,000 rows in a fresh platform and compares the ingest process's
peak RSS (``VmHWM``) for the two sizes.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.ingest_parse import PLACEHOLDERS, chunks, make_csv, parse_and_validate
from cli.client import PlatformClient
from services.ingest.csv_source import read_records
from services.ingest.validation import RowChecker, ValidRow, read_header
from shared.documents import Message, message_id, to_document
from shared.indexes import ensure_indexes
from shared.status import MessageStatus
from shared.store import connect_store
from stack.platform import Platform
from stack.processes import free_port

BATCH = 500
# Ingest is done once the transaction has left PROCESSING.
DONE = {"SCHEDULED", "READY_TO_SEND", "SENT", "COMPLETED", "FAILED"}


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def store_commands(p: Platform, transaction_id: str) -> int:
    """The store round trips ingest made for this transaction (its canonical log line)."""
    log = p.processes.log_path("ingest").read_text()
    for line in log.splitlines():
        if transaction_id in line and '"ingested"' in line:
            count: int = json.loads(line)["store_commands"]
            return count
    raise LookupError(f"no ingested line for {transaction_id}")


def ingest_through_the_api(p: Platform, rows: int, data: bytes) -> tuple[float, str]:
    """Seconds from the start of the upload until every message is stored; the id."""
    assert p.api_key is not None
    path = p.root / f"recipients-{rows}.csv"
    path.write_bytes(data)
    with PlatformClient(p.gateway_url, api_key=p.api_key, timeout=600) as client:
        template = client.create_template(
            {
                "name": "bench",
                "subject": "Hello {{ first_name }} {{ last_name }}",
                "html": "<p>{{ company }} in {{ city }}: {{ plan }}</p>",
            }
        )
        later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        began = time.perf_counter()
        tx_id = client.submit(path, template["id"], send_at=later)["transaction_id"]
        while (record := client.transaction(tx_id))["status"] not in DONE:
            time.sleep(0.05)
        elapsed = time.perf_counter() - began
    assert record["status"] == "SCHEDULED", record.get("failure")
    assert record["counters"]["total"] + record["counters"]["invalid"] == rows
    return elapsed, tx_id


async def raw_inserts(data: bytes, mongodb_uri: str) -> tuple[float, int]:
    """The same message documents inserted straight into the store: seconds in insert_many."""
    records = read_records(chunks(data))
    rows = RowChecker(await read_header(records), PLACEHOLDERS)
    checked = [rows.check(record) async for record in records]
    valid = [row for row in checked if isinstance(row, ValidRow)]
    now = datetime.now(UTC)
    docs = [
        to_document(
            Message(
                id=message_id("raw", row.row),
                transaction_id="raw",
                tenant="local",
                batch=i // BATCH,
                row=row.row,
                email=row.email,
                data=row.data,
                status=MessageStatus.SCHEDULED,
                updated_at=now,
            )
        )
        for i, row in enumerate(valid)
    ]
    store = await connect_store(mongodb_uri, "bench_raw")
    await ensure_indexes(store.db)  # the same indexes ingest writes through
    spent = 0.0
    for start in range(0, len(docs), BATCH):
        began = time.perf_counter()
        await store.messages.insert_many(docs[start : start + BATCH], ordered=False)
        spent += time.perf_counter() - began
    await store.client.drop_database("bench_raw")
    await store.close()
    return spent, len(docs)


def platform(root: Path) -> Platform:
    return Platform(root, gateway_port=free_port(), service_env={"MONGODB_DB": "bench"})


def main() -> None:
    rows = int(next((a for a in sys.argv[1:] if a.isdigit()), "200000"))
    data = make_csv(rows)
    print(f"{rows:,} rows, {len(data) / 1e6:.1f} MB")
    with tempfile.TemporaryDirectory() as tmp, platform(Path(tmp) / "big") as p:
        assert p.info is not None
        elapsed, tx_id = ingest_through_the_api(p, rows, data)
        rss = peak_rss_mb(p.processes.pid("ingest"))
        trips = store_commands(p, tx_id)
        spent, inserted = asyncio.run(raw_inserts(data, p.info.mongodb_uri))
        print(f"ingest through the API: {rows / elapsed:>9,.0f} rows/s ({elapsed:.1f}s)")
        print(f"raw insert_many:        {inserted / spent:>9,.0f} docs/s ({spent:.1f}s)")
        print(f"ratio ingest / raw:     {(rows / elapsed) / (inserted / spent):.2f} (goal >= 0.7)")
        print(
            f"store round trips:      {trips:,} = {trips * 100 / rows:.2f} per 100 rows (goal <= 1)"
        )
        began = time.perf_counter()
        asyncio.run(parse_and_validate(data))
        alone = time.perf_counter() - began
        print(f"parse+validate alone:   {rows / alone:>9,.0f} rows/s (goal > 100,000)")
        if "--rss" in sys.argv:
            with platform(Path(tmp) / "small") as small:
                ingest_through_the_api(small, 10_000, make_csv(10_000))
                small_rss = peak_rss_mb(small.processes.pid("ingest"))
            print(
                f"ingest peak RSS:        {rss:.0f} MB at {rows:,} rows, {small_rss:.0f} MB at "
                f"10,000 rows: ratio {rss / small_rss:.2f} (goal <= 1.3)"
            )


if __name__ == "__main__":
    main()
