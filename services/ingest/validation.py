"""The rules a CSV file and its rows must follow (ARCHITECTURE §1).

File-level problems (a header without an ``email`` column, a column the template needs and
the file lacks) stop the whole file; row-level problems become ``RowError`` documents and the
row becomes no message. Every row error code is in ``RowErrorCode``, every header error code
in ``HeaderErrorCode``.
"""

from __future__ import annotations

from collections.abc import Collection
from enum import StrEnum
from typing import TYPE_CHECKING, Final

import msgspec
from email_validator import EmailNotValidError, validate_email

from shared.documents import RowError
from shared.errors import InputError

if TYPE_CHECKING:
    from services.ingest.csv_source import Record

__all__ = [
    "EMAIL_COLUMN",
    "Header",
    "HeaderError",
    "HeaderErrorCode",
    "RowErrorCode",
    "ValidRow",
    "missing_columns",
    "normalize_column",
    "parse_header",
    "validate_row",
]

EMAIL_COLUMN: Final = "email"
_RESUBMIT: Final = "and resubmit the rows in error"


class HeaderErrorCode(StrEnum):
    MISSING_EMAIL_COLUMN = "MISSING_EMAIL_COLUMN"
    DUPLICATE_COLUMN = "DUPLICATE_COLUMN"
    EMPTY_COLUMN_NAME = "EMPTY_COLUMN_NAME"


class RowErrorCode(StrEnum):
    FIELD_COUNT_MISMATCH = "FIELD_COUNT_MISMATCH"
    MISSING_EMAIL = "MISSING_EMAIL"
    INVALID_EMAIL = "INVALID_EMAIL"
    MISSING_PLACEHOLDER_VALUE = "MISSING_PLACEHOLDER_VALUE"


class HeaderError(InputError):
    """The header row cannot be used; ``code`` is stable, the message is for people.

    ``column`` is the normalized column name concerned (``""`` for an empty name) and
    ``position`` its 1-based place in the header (``None`` when the column is absent).
    """

    def __init__(
        self, code: HeaderErrorCode, message: str, *, column: str, position: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.column = column
        self.position = position


class Header(msgspec.Struct, frozen=True, kw_only=True):
    """The normalized column names, in file order; one of them is ``email``."""

    columns: tuple[str, ...]


class ValidRow(msgspec.Struct, frozen=True, kw_only=True):
    row: int
    email: str
    # Every column but email, keyed by normalized column name, values as in the file.
    data: dict[str, str]


def normalize_column(name: str) -> str:
    """``" First  Name "`` -> ``"first_name"``: stripped, lower-case, inner spaces to ``_``."""
    return "_".join(name.split()).lower()


def parse_header(fields: list[str]) -> Header:
    columns = tuple(normalize_column(field) for field in fields)
    seen: dict[str, int] = {}
    for position, column in enumerate(columns, start=1):
        if not column:
            raise HeaderError(
                HeaderErrorCode.EMPTY_COLUMN_NAME,
                f"Column {position} of the header row has no name; name it or delete the "
                "column, and upload the file again",
                column=column,
                position=position,
            )
        if column in seen:
            raise HeaderError(
                HeaderErrorCode.DUPLICATE_COLUMN,
                f"Columns {seen[column]} and {position} of the header row are both named "
                f"{column!r}; rename or delete one of them, and upload the file again",
                column=column,
                position=position,
            )
        seen[column] = position
    if EMAIL_COLUMN not in seen:
        raise HeaderError(
            HeaderErrorCode.MISSING_EMAIL_COLUMN,
            f"The header row has no {EMAIL_COLUMN!r} column; add one holding each "
            "recipient's address, and upload the file again",
            column=EMAIL_COLUMN,
        )
    return Header(columns=columns)


def missing_columns(header: Header, placeholders: Collection[str]) -> list[str]:
    """The template's placeholders that no column provides, sorted: a file-level problem."""
    return sorted(set(placeholders).difference(header.columns))


def validate_row(
    header: Header, record: Record, placeholders: Collection[str]
) -> ValidRow | RowError:
    """Check one data record; the first rule it breaks is its error.

    Blank records (``fields == []``) are the caller's to skip before calling this.
    Placeholders the header lacks are ignored here (see ``missing_columns``).
    """
    row = record.row
    if len(record.fields) != len(header.columns):
        return _field_count_mismatch(row, len(record.fields), len(header.columns))
    data = dict(zip(header.columns, record.fields, strict=True))
    raw_email = data.pop(EMAIL_COLUMN)
    if not raw_email.strip():
        return RowError(
            code=RowErrorCode.MISSING_EMAIL,
            message=f"Row {row} has no email address",
            row=row,
            field=EMAIL_COLUMN,
            value=raw_email,
            expected_format="an email address such as name@example.com",
            recovery_action=f"Add the email address in row {row} {_RESUBMIT}",
        )
    try:
        email = validate_email(raw_email.strip(), check_deliverability=False).normalized
    except EmailNotValidError as e:
        return RowError(
            code=RowErrorCode.INVALID_EMAIL,
            message=f"Row {row}: {raw_email!r} is not a valid email address ({e})",
            row=row,
            field=EMAIL_COLUMN,
            value=raw_email,
            expected_format="an email address such as name@example.com",
            recovery_action=f"Correct the email address in row {row} {_RESUBMIT}",
        )
    empty = [
        name
        for name in sorted(placeholders)
        if name != EMAIL_COLUMN and name in data and not data[name].strip()
    ]
    if empty:
        return _missing_placeholder_value(row, empty, data[empty[0]])
    return ValidRow(row=row, email=email, data=data)


def _field_count_mismatch(row: int, found: int, expected: int) -> RowError:
    return RowError(
        code=RowErrorCode.FIELD_COUNT_MISMATCH,
        message=f"Row {row} has {found} fields where the header has {expected}",
        row=row,
        expected_format=f"{expected} fields, one per header column",
        recovery_action=(
            f"Give row {row} exactly {expected} fields (put double quotes around any value "
            f"that contains the separator) {_RESUBMIT}"
        ),
    )


def _missing_placeholder_value(row: int, empty: list[str], value: str) -> RowError:
    names = ", ".join(repr(name) for name in empty)
    plural = "s" if len(empty) > 1 else ""
    return RowError(
        code=RowErrorCode.MISSING_PLACEHOLDER_VALUE,
        message=f"Row {row} has no value in column{plural} {names}, which the template uses",
        row=row,
        field=empty[0],
        value=value,
        expected_format="a non-empty value",
        recovery_action=f"Fill in column{plural} {names} in row {row} {_RESUBMIT}",
    )
