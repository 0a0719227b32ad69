"""How fast ingest parses and validates CSV rows, in-process (no store, no S3).

    .venv/bin/python -m bench.ingest_parse [ROWS]

Prints rows/s for parsing alone and for parsing plus row validation, measured in one run.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator

from services.ingest.csv_source import read_records
from services.ingest.validation import ValidRow, parse_header, validate_row

CHUNK = 256 * 1024


def make_csv(rows: int) -> bytes:
    lines = ["email,first_name,city"]
    lines += [f'user{i}@example.org,Name {i},"City, {i % 97}"' for i in range(rows)]
    return ("\r\n".join(lines) + "\r\n").encode()


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), CHUNK):
        yield data[start : start + CHUNK]


async def parse_only(data: bytes) -> int:
    return sum([1 async for _ in read_records(chunks(data))])


async def parse_and_validate(data: bytes) -> int:
    records = read_records(chunks(data))
    header = parse_header((await anext(records)).fields)
    valid = 0
    async for record in records:
        if isinstance(validate_row(header, record, ["first_name", "city"]), ValidRow):
            valid += 1
    return valid


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    data = make_csv(rows)
    for name, run in (("parse", parse_only), ("parse+validate", parse_and_validate)):
        began = time.perf_counter()
        asyncio.run(run(data))
        elapsed = time.perf_counter() - began
        print(f"{name:>15}: {rows:,} rows in {elapsed:.2f}s = {rows / elapsed:,.0f} rows/s")


if __name__ == "__main__":
    main()
