"""How fast ingest parses and validates CSV rows, in-process (no store, no S3), on one core.

    .venv/bin/python -m bench.ingest_parse [ROWS]

The file is what issue 3's benchmark describes: realistic addresses (a few big mailbox
providers and thousands of company domains, several local-part shapes), 5 placeholder
columns (one with quoted commas), and 2 % invalid rows of several kinds, duplicates
included. Prints rows/s for parsing alone and for parsing plus every row rule
(``RowChecker``: field count, email syntax, placeholder values, duplicate recipients), each
measured in the same run, and the valid/invalid split as a check that the work was done.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from services.ingest.csv_source import read_records
from services.ingest.validation import RowChecker, ValidRow, read_header

CHUNK = 256 * 1024  # what ingest reads from S3 at a time
PLACEHOLDERS = ("first_name", "last_name", "company", "city", "plan")
FIRST = [
    "ada",
    "alan",
    "grace",
    "linus",
    "margaret",
    "dennis",
    "barbara",
    "ken",
    "frances",
    "john",
    "radia",
    "tim",
    "sophie",
    "hedy",
    "katherine",
    "guido",
    "yukihiro",
    "bjarne",
    "anders",
    "rasmus",
    "zoe",
    "chloe",
    "mateo",
    "lucia",
    "noah",
]
LAST = [
    "lovelace",
    "turing",
    "hopper",
    "torvalds",
    "hamilton",
    "ritchie",
    "liskov",
    "thompson",
    "allen",
    "mccarthy",
    "perlman",
    "berners-lee",
    "wilson",
    "lamarr",
    "johnson",
    "rossum",
    "matsumoto",
    "stroustrup",
    "hejlsberg",
]
CITIES = ("Paris", "Berlin", "London", "Lisbon", "Kraków", "São Paulo", "Zürich", "Oslo")
PLANS = ("free", "pro", "team", "enterprise")
PROVIDERS = [
    "gmail.com",
    "outlook.com",
    "hotmail.com",
    "yahoo.com",
    "icloud.com",
    "gmx.de",
    "web.de",
    "orange.fr",
    "yahoo.co.uk",
    "proton.me",
    "aol.com",
    "libero.it",
]
TLDS = ("com", "co.uk", "de", "fr", "io", "org", "net", "com.br", "nl", "es")
# One of every 50 rows is invalid, of these kinds in turn.
INVALID = (
    "no-at-sign",
    "double..dot@example.com",
    "single-label@intranet",
    "space inside@example.com",
    "trailing-dot@example.com.",
    "x@localhost",
    "missing placeholder value",
    "duplicate of an earlier row",
)


def make_csv(rows: int, *, seed: int = 7) -> bytes:
    rnd = random.Random(seed)
    companies = [f"{rnd.choice(LAST)}{n}.{rnd.choice(TLDS)}" for n in range(3000)]
    lines = ["email,first_name,last_name,company,city,plan"]
    emails: list[str] = []
    for i in range(rows):
        first, last = rnd.choice(FIRST), rnd.choice(LAST)
        domain = rnd.choice(PROVIDERS) if rnd.random() < 0.6 else rnd.choice(companies)
        local = rnd.choice(
            (f"{first}.{last}{i}", f"{first[0]}{last}{i}", f"{first}_{last}+news{i}", f"{first}{i}")
        )
        email = f"{local}@{domain}"
        company = f'"{last.title()}, {rnd.choice(("Inc.", "GmbH", "SA", "Ltd"))}"'
        city, plan = rnd.choice(CITIES), rnd.choice(PLANS)
        if i % 50 == 49:
            kind = INVALID[(i // 50) % len(INVALID)]
            if kind == "missing placeholder value":
                first = ""
            elif kind == "duplicate of an earlier row":
                email = emails[rnd.randrange(len(emails))]
            else:
                email = kind
        emails.append(email)
        lines.append(f"{email},{first.title()},{last.title()},{company},{city},{plan}")
    return ("\r\n".join(lines) + "\r\n").encode()


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), CHUNK):
        yield data[start : start + CHUNK]


async def parse_only(data: bytes) -> tuple[int, int]:
    return sum([1 async for _ in read_records(chunks(data))]) - 1, 0


async def parse_and_validate(data: bytes) -> tuple[int, int]:
    records = read_records(chunks(data))
    rows = RowChecker(await read_header(records), PLACEHOLDERS)
    valid = invalid = 0
    async for record in records:
        result = rows.check(record)
        if isinstance(result, ValidRow):
            valid += 1
        elif result is not None:
            invalid += 1
    return valid, invalid


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    data = make_csv(rows)
    print(f"{rows:,} rows, {len(data) / 1e6:.1f} MB")
    runs: tuple[tuple[str, Callable[[bytes], Coroutine[Any, Any, tuple[int, int]]]], ...] = (
        ("parse", parse_only),
        ("parse+validate", parse_and_validate),
    )
    for name, run in runs:
        began = time.perf_counter()
        valid, invalid = asyncio.run(run(data))
        elapsed = time.perf_counter() - began
        split = f" ({valid:,} valid, {invalid:,} invalid)" if name != "parse" else ""
        print(f"{name:>15}: {rows / elapsed:>9,.0f} rows/s, {elapsed:.2f}s{split}")


if __name__ == "__main__":
    main()
