from __future__ import annotations

import msgspec
import pytest

from services.ingest.csv_source import Record
from services.ingest.validation import (
    Header,
    HeaderError,
    HeaderErrorCode,
    RowErrorCode,
    ValidRow,
    missing_columns,
    parse_header,
    validate_row,
)
from shared.documents import RowError
from shared.errors import InputError

HEADER = parse_header(["Email", " First  Name ", "City"])


def _row(*fields: str, row: int = 5) -> Record:
    return Record(row=row, fields=list(fields))


def _error(result: ValidRow | RowError) -> RowError:
    assert isinstance(result, RowError)
    return result


def test_header_names_are_normalized() -> None:
    header = parse_header(["Email", " First  Name ", "City"])
    assert header == Header(columns=("email", "first_name", "city"))


@pytest.mark.parametrize(
    ("fields", "code", "column"),
    [
        (["name", "city"], HeaderErrorCode.MISSING_EMAIL_COLUMN, "email"),
        (["email", "Name", "name "], HeaderErrorCode.DUPLICATE_COLUMN, "name"),
        (["email", "name", " "], HeaderErrorCode.EMPTY_COLUMN_NAME, ""),
        ([], HeaderErrorCode.MISSING_EMAIL_COLUMN, "email"),
    ],
)
def test_header_errors(fields: list[str], code: HeaderErrorCode, column: str) -> None:
    with pytest.raises(HeaderError) as caught:
        parse_header(fields)
    assert isinstance(caught.value, InputError)
    assert caught.value.code == code
    assert caught.value.column == column


def test_duplicate_column_names_both_positions() -> None:
    with pytest.raises(HeaderError, match="Columns 2 and 3"):
        parse_header(["email", "Name", "name"])


def test_missing_columns_lists_placeholders_no_column_provides() -> None:
    assert missing_columns(HEADER, ["zip", "first_name", "email", "country"]) == [
        "country",
        "zip",
    ]


def test_a_valid_row() -> None:
    result = validate_row(HEADER, _row(" Ada@Example.COM ", "Ada", "Paris"), ["first_name"])
    assert result == ValidRow(
        row=5, email="Ada@example.com", data={"first_name": "Ada", "city": "Paris"}
    )


def test_invalid_email() -> None:
    error = _error(validate_row(HEADER, _row("ada@", "Ada", "Paris"), []))
    assert error.code == RowErrorCode.INVALID_EMAIL
    assert (error.row, error.field, error.value) == (5, "email", "ada@")
    assert error.expected_format == "an email address such as name@example.com"
    assert error.recovery_action == (
        "Correct the email address in row 5 and resubmit the rows in error"
    )


def test_missing_email() -> None:
    error = _error(validate_row(HEADER, _row("  ", "Ada", "Paris"), []))
    assert error.code == RowErrorCode.MISSING_EMAIL
    assert error.field == "email"


@pytest.mark.parametrize("fields", [("a@example.com", "Ada"), ("a@example.com", "A", "B", "C")])
def test_field_count_mismatch(fields: tuple[str, ...]) -> None:
    error = _error(validate_row(HEADER, _row(*fields), []))
    assert error.code == RowErrorCode.FIELD_COUNT_MISMATCH
    assert error.message == f"Row 5 has {len(fields)} fields where the header has 3"


def test_missing_placeholder_value_names_the_column() -> None:
    placeholders = ["first_name", "city", "not_a_column"]
    error = _error(validate_row(HEADER, _row("a@example.com", "Ada", " "), placeholders))
    assert error.code == RowErrorCode.MISSING_PLACEHOLDER_VALUE
    assert (error.field, error.value) == ("city", " ")


def test_empty_columns_the_template_does_not_use_are_fine() -> None:
    result = validate_row(HEADER, _row("a@example.com", "", ""), ["not_a_column"])
    assert isinstance(result, ValidRow)
    assert result.data == {"first_name": "", "city": ""}


def test_every_row_error_is_a_storable_document() -> None:
    error = _error(validate_row(HEADER, _row("nope", "Ada", "Paris"), []))
    built = msgspec.to_builtins(error)
    assert built["code"] == "INVALID_EMAIL"
    assert msgspec.convert(built, RowError) == error
