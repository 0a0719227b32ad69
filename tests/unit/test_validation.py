from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest

from services.ingest.csv_source import Record
from services.ingest.validation import (
    FileError,
    FileErrorCode,
    Header,
    HeaderError,
    HeaderErrorCode,
    Recipients,
    RowChecker,
    RowErrorCode,
    ValidRow,
    missing_columns,
    parse_header,
    read_header,
    validate_row,
)
from shared.documents import RowError
from shared.errors import InputError
from shared.settings import IngestSettings

HEADER = parse_header(["Email", " First  Name ", "City"])


def _row(*fields: str, row: int = 5) -> Record:
    return Record(row=row, fields=list(fields))


def _error(result: ValidRow | RowError) -> RowError:
    assert isinstance(result, RowError)
    return result


def test_header_names_are_normalized() -> None:
    header = parse_header(["Email", " First  Name ", "City"])
    assert header == Header(
        columns=("email", "first_name", "city"), names=("Email", " First  Name ", "City")
    )


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


def test_missing_placeholder_value_is_the_first_empty_column() -> None:
    error = _error(validate_row(HEADER, _row("a@example.com", "", "\t"), ["city", "first_name"]))
    assert error.field == "city"
    assert error.value == "\t"
    assert "'city', 'first_name'" in error.message


def _check_all(rows: list[list[str]]) -> list[tuple[int, str]]:
    checker = RowChecker(HEADER, ["first_name"])
    outcomes: list[tuple[int, str]] = []
    for number, fields in enumerate(rows, start=2):
        result = checker.check(Record(row=number, fields=fields))
        if result is None:
            outcomes.append((number, "blank"))
        elif isinstance(result, RowError):
            outcomes.append((number, result.code))
        else:
            outcomes.append((number, result.email))
    return outcomes


FILE_ROWS = [
    ["ada@example.com", "Ada", "Paris"],
    ["Ada@example.com", "Ada", "Paris"],  # the local part keeps its case: another address
    ["ada@EXAMPLE.com", "Ada", "Lyon"],  # the same address once normalized
    [],
    ["", " ", ""],
    ["bob@example.com", "", "Rome"],  # invalid: does not claim the address
    [" bob@example.com ", "Bob", "Rome"],
    ["bob@example.com", "Bob", "Rome"],
    ["bob@example.com"],  # a field count error comes first
]


def test_duplicates_first_valid_row_wins() -> None:
    assert _check_all(FILE_ROWS) == [
        (2, "ada@example.com"),
        (3, "Ada@example.com"),
        (4, "DUPLICATE_RECIPIENT"),
        (5, "blank"),
        (6, "blank"),
        (7, "MISSING_PLACEHOLDER_VALUE"),
        (8, "bob@example.com"),
        (9, "DUPLICATE_RECIPIENT"),
        (10, "FIELD_COUNT_MISMATCH"),
    ]


def test_a_rerun_of_the_same_rows_gives_the_same_outcomes() -> None:
    assert _check_all(FILE_ROWS) == _check_all(FILE_ROWS)


def test_a_duplicate_is_a_storable_row_error() -> None:
    checker = RowChecker(HEADER, [])
    assert isinstance(checker.check(_row("a@example.com", "A", "B", row=2)), ValidRow)
    error = checker.check(_row("a@Example.COM", "A", "B", row=3))
    assert isinstance(error, RowError)
    assert error.code == RowErrorCode.DUPLICATE_RECIPIENT
    assert (error.row, error.field, error.value) == (3, "email", "a@example.com")
    assert error.message.startswith("Row 3: a@example.com is the address of an earlier row")
    assert msgspec.convert(msgspec.to_builtins(error), RowError) == error


def test_recipients_remember_many_addresses_exactly() -> None:
    recipients = Recipients()
    rows = [ValidRow(row=n, email=f"user{n}@example.com", data={}) for n in range(50_000)]
    assert all(recipients.admit(row) is row for row in rows)
    assert all(isinstance(recipients.admit(row), RowError) for row in rows[::97])
    assert isinstance(recipients.admit(ValidRow(row=1, email="new@x.com", data={})), ValidRow)


def test_an_over_long_field_is_a_row_error_naming_its_column() -> None:
    long = "x" * 16
    error = _error(validate_row(HEADER, _row("a@example.com", "Ada", long), [], max_field_chars=15))
    assert error.code == RowErrorCode.FIELD_TOO_LONG
    assert (error.row, error.field) == (5, "city")
    assert error.value == long + "…"
    assert error.message == (
        "Row 5: the value in column 'city' has 16 characters, more than the 15 a field may have"
    )
    # At the limit exactly, the row is fine.
    assert isinstance(
        validate_row(HEADER, _row("a@example.com", "Ada", long[:15]), [], max_field_chars=15),
        ValidRow,
    )


def test_an_over_long_value_is_shortened_in_the_error() -> None:
    error = _error(validate_row(HEADER, _row("a@example.com", "y" * 10_001, "Paris"), []))
    assert error.field == "first_name"
    assert error.value == "y" * 100 + "…"


def test_rows_past_the_limit_fail_the_file_and_blank_rows_do_not_count() -> None:
    checker = RowChecker(HEADER, [], max_rows=2)
    assert isinstance(checker.check(_row("a@example.com", "A", "B", row=2)), ValidRow)
    assert checker.check(_row(row=3)) is None
    assert isinstance(checker.check(_row("nope", "A", "B", row=4)), RowError)
    with pytest.raises(FileError) as raised:
        checker.check(_row("c@example.com", "C", "D", row=5))
    assert raised.value.code == FileErrorCode.TOO_MANY_ROWS
    assert raised.value.details == {"row": 5, "max_rows": 2}
    assert str(raised.value).startswith("Row 5 is past the 2 rows a file may have")


async def _records(*rows: list[str]) -> AsyncIterator[Record]:
    for number, fields in enumerate(rows, start=1):
        yield Record(row=number, fields=fields)


async def test_a_header_wider_than_the_limit_fails_the_file() -> None:
    with pytest.raises(FileError) as raised:
        await read_header(_records(["email", "a", "b", "c"]), max_columns=3)
    assert raised.value.code == FileErrorCode.TOO_MANY_COLUMNS
    assert raised.value.details == {"columns": 4, "max_columns": 3}
    header = await read_header(_records(["email", "a", "b"]), max_columns=3)
    assert header.columns == ("email", "a", "b")


async def test_no_header_at_all_is_an_empty_file() -> None:
    for rows in ([], [[], []]):
        with pytest.raises(FileError) as raised:
            await read_header(_records(*rows))
        assert raised.value.code == FileErrorCode.EMPTY_FILE


def test_the_default_limits_are_the_settings_defaults() -> None:
    settings = IngestSettings()
    assert (settings.max_rows, settings.max_columns, settings.max_field_chars) == (
        1_000_000,
        100,
        10_000,
    )
    # A field at the default limit passes; one more character does not.
    fields = ["a@example.com", "z" * 10_000, ""]
    assert isinstance(validate_row(HEADER, _row(*fields), []), ValidRow)
    fields[1] += "z"
    assert _error(validate_row(HEADER, _row(*fields), [])).code == RowErrorCode.FIELD_TOO_LONG
