"""``validate_only``: a file checked as ingest would check it, and the report of what it found.

``check_file`` runs ingest's own rules (``services.ingest``: ``read_records``,
``read_header``, ``missing_columns``, ``RowChecker``) with the same limits (``CsvSettings``)
on the file's chunks as they arrive. It keeps counts and the first ``FIRST_ERRORS`` row
errors only, so memory stays bounded whatever the file's size.

What ingest would fail the whole file for is the report's ``file_error``, with ingest's code
and message: a header error, a limit, unreadable bytes, a placeholder no column provides
(the rows are still checked then, for their own errors), or no valid row. Reading stops at
the first of them but a missing column; the counts are those of the rows read until then.

``header_problem`` is the part of this a submission is refused for at once (400
``INVALID_FILE``): what the header row decides, read from the file's first bytes. The rest
(a row limit, no valid row, bad bytes further on) is ingest's, as a FAILED transaction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Collection
from contextlib import aclosing
from typing import Any, Final

import msgspec

from services.gateway.error_catalogue import FileCode
from services.gateway.views import RowErrorItem, row_error_item
from services.ingest.csv_source import read_records
from services.ingest.validation import (
    FileError,
    FileErrorCode,
    HeaderError,
    RowChecker,
    RowCounter,
    ValidRow,
    missing_columns,
    missing_columns_error,
    no_valid_rows_error,
    read_header,
)
from shared.documents import RowError
from shared.errors import InputError
from shared.settings import CsvSettings

__all__ = [
    "FIRST_ERRORS",
    "FileProblem",
    "RowCounts",
    "ValidationReport",
    "check_file",
    "header_problem",
]

FIRST_ERRORS: Final = 20


class RowCounts(msgspec.Struct, frozen=True, kw_only=True):
    # Data rows read: blank lines are not rows.
    total: int
    valid: int
    invalid: int


class FileProblem(msgspec.Struct, frozen=True, kw_only=True):
    """Why ingest would fail the whole file (see docs/errors.md)."""

    code: FileCode
    message: str
    details: dict[str, Any]


class ValidationReport(msgspec.Struct, frozen=True, kw_only=True):
    """What a submission of the file would meet, found without submitting it.

    ``valid`` is true when every row would become a message: no file error, no row error.
    """

    valid: bool
    rows: RowCounts
    # Row errors by code, every one counted (``first_errors`` lists the first few).
    errors_by_code: dict[str, int]
    first_errors: list[RowErrorItem]
    # The template's placeholders no column of the file provides.
    missing_placeholders: list[str]
    file_error: FileProblem | None


class _Tally:
    def __init__(self) -> None:
        self.valid = 0
        self.by_code: Counter[str] = Counter()
        self.first: list[RowErrorItem] = []

    def add(self, result: ValidRow | RowError) -> None:
        if isinstance(result, ValidRow):
            self.valid += 1
            return
        self.by_code[result.code] += 1
        if len(self.first) < FIRST_ERRORS:
            self.first.append(row_error_item(result))


def _problem(error: FileError) -> FileProblem:
    return FileProblem(code=error.code, message=str(error), details=error.details)


def _header_problem(error: HeaderError) -> FileProblem:
    # The details ingest records with the failed transaction.
    return FileProblem(code=error.code, message=str(error), details={"column": error.column})


def _unreadable(error: InputError) -> FileProblem:
    return FileProblem(code=FileErrorCode.CSV_PARSING_ERROR, message=str(error), details={})


async def header_problem(
    chunks: AsyncIterator[bytes],
    placeholders: Collection[str],
    limits: CsvSettings,
    *,
    complete: bool = True,
) -> FileProblem | None:
    """What ingest would fail the file for that its header row alone decides, or None.

    Reads no further than the header. ``chunks`` may be only the file's beginning, cut
    just after a line break (``complete=False``): a record parsed from it is whole (a
    record ends at a line break outside quotes, and a cut inside quotes is a quote never
    closed), but the end of ``chunks`` is not the file's end, so what the end decides --
    no header at all, a quote never closed -- is left to ingest (None).
    """
    records = read_records(chunks)
    async with aclosing(records):
        try:
            header = await read_header(records, max_columns=limits.max_columns)
        except HeaderError as e:
            return _header_problem(e)
        except FileError as e:
            # TOO_MANY_COLUMNS is the header's; EMPTY_FILE, the end's.
            return _problem(e) if complete or e.code != FileErrorCode.EMPTY_FILE else None
        except InputError as e:
            return _unreadable(e) if complete else None
    missing = missing_columns(header, placeholders)
    return _problem(missing_columns_error(missing)) if missing else None


async def rows_problem(chunks: AsyncIterator[bytes], limits: CsvSettings) -> FileProblem | None:
    """``TOO_MANY_ROWS`` when the file has more data rows than ``limits.max_rows``, counted
    as ingest counts them, or None. Checks nothing else: the header is ``header_problem``'s,
    and what is wrong further on is left to ingest."""
    records = read_records(chunks)
    rows = RowCounter(limits.max_rows)
    async with aclosing(records):
        try:
            await read_header(records, max_columns=limits.max_columns)
            async for record in records:
                rows.count(record)
        except FileError as e:
            return _problem(e) if e.code == FileErrorCode.TOO_MANY_ROWS else None
        except (HeaderError, InputError):
            return None
    return None


async def check_file(
    chunks: AsyncIterator[bytes], placeholders: Collection[str], limits: CsvSettings
) -> ValidationReport:
    """Check the file of ``chunks`` for a template of ``placeholders``, within ``limits``.

    Errors of ``chunks`` itself (a limit of the transport, S3 unavailable) propagate.
    """
    tally = _Tally()
    missing: list[str] = []
    problem: FileProblem | None = None
    records = read_records(chunks)
    try:
        async with aclosing(records):
            header = await read_header(records, max_columns=limits.max_columns)
            missing = missing_columns(header, placeholders)
            if missing:
                problem = _problem(missing_columns_error(missing))
            rows = RowChecker(
                header,
                placeholders,
                max_rows=limits.max_rows,
                max_field_chars=limits.max_field_chars,
                max_schedule_days=limits.max_schedule_days,
            )
            async for record in records:
                result = rows.check(record)
                if result is not None:
                    tally.add(result)
    except HeaderError as e:
        problem = _header_problem(e)
    except FileError as e:
        problem = problem or _problem(e)
    except InputError as e:
        problem = problem or _unreadable(e)
    invalid = sum(tally.by_code.values())
    if problem is None and tally.valid == 0:
        problem = _problem(no_valid_rows_error(invalid))
    return ValidationReport(
        valid=problem is None and invalid == 0,
        rows=RowCounts(total=tally.valid + invalid, valid=tally.valid, invalid=invalid),
        errors_by_code=dict(tally.by_code),
        first_errors=tally.first,
        missing_placeholders=missing,
        file_error=problem,
    )
