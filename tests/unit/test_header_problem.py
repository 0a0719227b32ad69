"""``header_problem``: what a file's header row decides, from the whole file or its first
bytes cut after a line break -- never an error the cut made."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.gateway.report import header_problem
from shared.settings import CsvSettings

LIMITS = CsvSettings()


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _code(*parts: bytes, placeholders: tuple[str, ...] = (), complete: bool = True) -> str:
    problem = await header_problem(_chunks(*parts), placeholders, LIMITS, complete=complete)
    return "" if problem is None else problem.code


@pytest.mark.parametrize("complete", [True, False])
async def test_a_whole_header_decides_in_a_cut_beginning_too(complete: bool) -> None:
    assert await _code(b"name\nAnn\n", complete=complete) == "MISSING_EMAIL_COLUMN"
    assert await _code(b"\n\nemail,Email\n", complete=complete) == "DUPLICATE_COLUMN"
    too_many = ",".join(["email", *map(str, range(LIMITS.max_columns))]).encode() + b"\n"
    assert await _code(too_many, complete=complete) == "TOO_MANY_COLUMNS"
    missing = await _code(b"email,city\n", placeholders=("name", "city"), complete=complete)
    assert missing == "MISSING_PLACEHOLDER_COLUMN"
    assert await _code(b"Email,Name\n", placeholders=("name",), complete=complete) == ""


async def test_what_only_the_files_end_decides_is_left_undecided_in_a_cut_beginning() -> None:
    # A quoted column name with a line break, cut after that line break.
    head = b'email,"first\n'
    assert await _code(head) == "CSV_PARSING_ERROR"
    assert await _code(head, complete=False) == ""
    assert await _code(b"\n\r\n") == "EMPTY_FILE"
    assert await _code(b"\n\r\n", complete=False) == ""
    assert await _code(b"") == "EMPTY_FILE"
    assert await _code(b"", complete=False) == ""


async def test_unreadable_bytes_after_the_header_are_not_its_problem() -> None:
    assert await _code(b"email\n\xff\xfe\n") == ""
    assert await _code(b"em\xffail\n") == "CSV_PARSING_ERROR"
    # The header split over chunks, as from S3.
    assert await _code(b"na", b"me,ci", b"ty\nAnn,Paris\n") == "MISSING_EMAIL_COLUMN"
