"""The malformed CSV corpus (tests/corpus): each file gives the errors cases.toml lists.

Each file goes through the pure pipeline ingest runs (``read_records``, ``read_header``,
``missing_columns``, ``RowChecker``), whole and in small chunks, with no service.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from services.ingest.csv_source import MAX_RECORD_CHARS, read_records
from services.ingest.validation import (
    FileError,
    FileErrorCode,
    HeaderError,
    RowChecker,
    ValidRow,
    missing_columns,
    read_header,
)
from shared.errors import InputError
from shared.settings import IngestSettings

CORPUS = Path(__file__).parent.parent / "corpus"
CASES: dict[str, dict[str, Any]] = tomllib.loads((CORPUS / "cases.toml").read_text())


class Outcome:
    def __init__(self) -> None:
        self.file_error: str | None = None
        self.row: int | None = None
        self.row_errors: list[list[Any]] = []


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def _run(data: bytes, case: dict[str, Any], size: int) -> Outcome:
    """What ingest decides for the file, in the order it decides it."""
    outcome = Outcome()
    placeholders = case.get("placeholders", ["name"])
    records = read_records(
        _chunks(data, size), max_record_chars=case.get("max_record_chars", MAX_RECORD_CHARS)
    )
    limits = IngestSettings(
        **{k: case[k] for k in ("max_rows", "max_columns", "max_field_chars") if k in case}
    )
    valid = 0
    try:
        header = await read_header(records, max_columns=limits.max_columns)
        if missing_columns(header, placeholders):
            outcome.file_error = FileErrorCode.MISSING_PLACEHOLDER_COLUMN
            return outcome
        rows = RowChecker(
            header,
            placeholders,
            max_rows=limits.max_rows,
            max_field_chars=limits.max_field_chars,
        )
        async for record in records:
            result = rows.check(record)
            if isinstance(result, ValidRow):
                valid += 1
            elif result is not None:
                outcome.row_errors.append([result.row, result.code])
    except HeaderError as e:
        outcome.file_error = e.code
        return outcome
    except FileError as e:
        outcome.file_error = e.code
        outcome.row = e.details.get("row")
        return outcome
    except InputError as e:
        outcome.file_error = FileErrorCode.CSV_PARSING_ERROR
        named = re.match(r"Row (\d+)", str(e))
        outcome.row = int(named[1]) if named else None
        return outcome
    if valid == 0:
        outcome.file_error = FileErrorCode.NO_VALID_ROWS
    return outcome


def test_the_corpus_is_complete() -> None:
    files = {path.name for path in CORPUS.glob("*.csv")}
    assert files == set(CASES)
    assert len(files) >= 30


@pytest.mark.parametrize("size", [1 << 20, 7])
@pytest.mark.parametrize("name", sorted(CASES))
async def test_each_file_gives_its_errors(name: str, size: int) -> None:
    case = CASES[name]
    outcome = await _run((CORPUS / name).read_bytes(), case, size)
    assert outcome.file_error == case.get("file_error")
    assert outcome.row == case.get("row")
    if "file_error" not in case or case["file_error"] == FileErrorCode.NO_VALID_ROWS:
        assert outcome.row_errors == case.get("row_errors", [])
