"""``validate_only``: a file checked as ingest would check it, and the report of what it found.

``check_file`` runs ingest's own rules (``services.ingest``: ``read_records``,
``read_header``, ``missing_columns``, ``RowChecker``) with the same limits (``CsvSettings``)
on the file's chunks as they arrive. It keeps counts and the first ``FIRST_ERRORS`` row
errors only, so memory stays bounded whatever the file's size.

What ingest would fail the whole file for is the report's ``file_error``, with ingest's code
and message: a header error, a limit, unreadable bytes, a placeholder no column provides
(the rows are still checked then, for their own errors), or no valid row. Reading stops at
the first of them but a missing column; the counts are those of the rows read until then.
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
    ValidRow,
    missing_columns,
    missing_columns_error,
    no_valid_rows_error,
    read_header,
)
from shared.documents import RowError
from shared.errors import InputError
from shared.settings import CsvSettings

__all__ = ["FIRST_ERRORS", "FileProblem", "RowCounts", "ValidationReport", "check_file"]

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
        # The details ingest records with the failed transaction.
        problem = FileProblem(code=e.code, message=str(e), details={"column": e.column})
    except FileError as e:
        problem = problem or _problem(e)
    except InputError as e:
        problem = problem or FileProblem(
            code=FileErrorCode.CSV_PARSING_ERROR, message=str(e), details={}
        )
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
