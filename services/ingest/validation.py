"""The rules a CSV file and its rows must follow (ARCHITECTURE §1).

File-level problems (a header without an ``email`` column, a column the template needs and
the file lacks, an empty file, a file over a limit) stop the whole file; row-level problems
become ``RowError`` documents and the row becomes no message. Every row error code is in
``RowErrorCode``, every header error code in ``HeaderErrorCode``, every other file error code
in ``FileErrorCode``.

The limits (rows, columns, field length) are ``CsvSettings``', shared by ingest and the
gateway's ``validate_only``; the functions here take them as arguments and default to the
settings' defaults.

Email syntax is email-validator's, syntax only, decided at ~10x its speed (``normalize_email``):
an address of the common shape -- an ASCII dot-atom before the ``@``, letters, digits, dots
and hyphens after it -- is decided from email-validator's own verdict on its domain, asked
once per domain and memoized; any other address goes to email-validator whole. For the
common shape email-validator's answer depends on nothing else: such a local part passes its
dot-atom rule unchanged (lower-cased only if it is an RFC 2142 mailbox name), the domain is
checked on its own, and the address-length limit adds the two. tests/unit/test_email_syntax.py
checks the agreement, on a fixed list and on generated addresses.

Duplicate recipients are found by ``Recipients`` in 8 bytes per address (see there).

Send times: an optional ``send_at`` column gives a row its own time, RFC 3339 with an offset
(``2030-01-31T09:00:00+01:00``), or a local date-time without one (``2030-01-31T09:00``)
read in the row's ``timezone`` column (an IANA name, ``Europe/Paris``), so "09:00 in each
recipient's own time zone" is one column of 09:00 beside one of zones. A local time that a
clock change skips or repeats is read as PEP 495's ``fold=0`` does: a skipped 02:30 is
the moment 02:30 of the old offset names, a repeated one its first occurrence. An empty
``send_at`` means the transaction's time. The limits are ``shared.schedule``'s, judged at
the ``now`` the checker is given (for ingest: when the transaction was accepted). These
two columns are not placeholders: they stay in the row's data (a template may show them)
but an empty one is not a MISSING_PLACEHOLDER_VALUE.
"""

from __future__ import annotations

import functools
import re
from array import array
from bisect import bisect_left
from collections.abc import AsyncIterator, Collection
from datetime import UTC, datetime
from enum import StrEnum
from hashlib import blake2b
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import (
    ATEXT,
    CASE_INSENSITIVE_MAILBOX_NAMES,
    EMAIL_MAX_LENGTH,
)

from shared.documents import RowError
from shared.errors import InputError
from shared.schedule import MAX_PAST, SendAtProblem, check_send_at
from shared.settings import CsvSettings

if TYPE_CHECKING:
    from services.ingest.csv_source import Record

__all__ = [
    "EMAIL_COLUMN",
    "FILE_ERRORS",
    "HEADER_ERRORS",
    "ROW_ERRORS",
    "SCHEDULE_COLUMNS",
    "SEND_AT_COLUMN",
    "TIMEZONE_COLUMN",
    "FileError",
    "FileErrorCode",
    "Header",
    "HeaderError",
    "HeaderErrorCode",
    "Recipients",
    "RowChecker",
    "RowCounter",
    "RowErrorCode",
    "ValidRow",
    "missing_columns",
    "missing_columns_error",
    "no_valid_rows_error",
    "normalize_column",
    "normalize_email",
    "parse_header",
    "read_header",
    "validate_row",
]

EMAIL_COLUMN: Final = "email"
SEND_AT_COLUMN: Final = "send_at"
TIMEZONE_COLUMN: Final = "timezone"
# Columns that say when a row is sent; never placeholder data that must be filled in.
SCHEDULE_COLUMNS: Final = frozenset({SEND_AT_COLUMN, TIMEZONE_COLUMN})
_RESUBMIT: Final = "and resubmit the rows in error"
_EMAIL_FORMAT: Final = "an email address such as name@example.com"

# The common shape of an address, decided without email-validator's full pass.
_PLAIN_ADDRESS: Final = re.compile(rf"([{ATEXT}]+(?:\.[{ATEXT}]+)*)@([a-zA-Z0-9.\-]+)")
_CASE_INSENSITIVE_MAILBOXES: Final = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)
# Distinct domains remembered; a file has far fewer, and each entry is ~0.3 kB.
_DOMAIN_MEMO: Final = 4096
# The production limits: the settings' defaults, decided there.
_LIMITS: Final = CsvSettings()
# How much of an over-long field a row error repeats in its ``value``.
_VALUE_PREVIEW: Final = 100
# A date and a time (minutes at least), then an optional offset; fromisoformat does the rest.
_DATE_TIME: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})?"
)
_SEND_AT_FORMAT: Final = (
    "RFC 3339 with an offset, e.g. 2030-01-31T09:00:00+01:00, or a local date-time such as "
    "2030-01-31T09:00 with the row's time zone in a timezone column"
)
_TIMEZONE_FORMAT: Final = "an IANA time zone name such as Europe/Paris or America/New_York"
_ZONE_MEMO: Final = 1024


class HeaderErrorCode(StrEnum):
    """Why a file's header row cannot be used: the whole file is refused."""

    MISSING_EMAIL_COLUMN = "MISSING_EMAIL_COLUMN"
    DUPLICATE_COLUMN = "DUPLICATE_COLUMN"
    EMPTY_COLUMN_NAME = "EMPTY_COLUMN_NAME"


# What each code means, for docs/errors.md and the OpenAPI schema (``error_catalogue``).
HEADER_ERRORS: Final[dict[HeaderErrorCode, str]] = {
    HeaderErrorCode.MISSING_EMAIL_COLUMN: (
        "The header row has no `email` column (names are compared case- and space-insensitively)."
    ),
    HeaderErrorCode.DUPLICATE_COLUMN: (
        "Two columns of the header row have the same name once normalized "
        "(`First Name` and `first_name` are the same)."
    ),
    HeaderErrorCode.EMPTY_COLUMN_NAME: "A column of the header row has no name.",
}


class FileErrorCode(StrEnum):
    """Why a whole file cannot be sent, besides its header (``HeaderErrorCode``)."""

    CSV_PARSING_ERROR = "CSV_PARSING_ERROR"
    EMPTY_FILE = "EMPTY_FILE"
    TOO_MANY_COLUMNS = "TOO_MANY_COLUMNS"
    TOO_MANY_ROWS = "TOO_MANY_ROWS"
    MISSING_PLACEHOLDER_COLUMN = "MISSING_PLACEHOLDER_COLUMN"
    NO_VALID_ROWS = "NO_VALID_ROWS"


FILE_ERRORS: Final[dict[FileErrorCode, str]] = {
    FileErrorCode.CSV_PARSING_ERROR: (
        "The file cannot be read as CSV: not UTF-8 text (UTF-16 included), a NUL character, "
        "a quoted field never closed, or a record longer than the parser allows."
    ),
    FileErrorCode.EMPTY_FILE: "The file has no header row: it is empty or only blank lines.",
    FileErrorCode.TOO_MANY_COLUMNS: (
        f"The header row has more columns than `max_columns` (default {_LIMITS.max_columns:,})."
    ),
    FileErrorCode.TOO_MANY_ROWS: (
        f"The file has more data rows than `max_rows` (default {_LIMITS.max_rows:,}); blank "
        "lines do not count."
    ),
    FileErrorCode.MISSING_PLACEHOLDER_COLUMN: (
        "The template uses a placeholder that no column of the file provides."
    ),
    FileErrorCode.NO_VALID_ROWS: "Every data row of the file is in error: nothing to send.",
}


class RowErrorCode(StrEnum):
    """Why one row of a file did not become a message; the other rows are not affected."""

    FIELD_COUNT_MISMATCH = "FIELD_COUNT_MISMATCH"
    MISSING_EMAIL = "MISSING_EMAIL"
    INVALID_EMAIL = "INVALID_EMAIL"
    MISSING_PLACEHOLDER_VALUE = "MISSING_PLACEHOLDER_VALUE"
    DUPLICATE_RECIPIENT = "DUPLICATE_RECIPIENT"
    FIELD_TOO_LONG = "FIELD_TOO_LONG"
    INVALID_SEND_AT = "INVALID_SEND_AT"
    INVALID_TIMEZONE = "INVALID_TIMEZONE"
    SEND_AT_IN_PAST = SendAtProblem.IN_PAST.value
    SEND_AT_TOO_FAR = SendAtProblem.TOO_FAR.value


ROW_ERRORS: Final[dict[RowErrorCode, str]] = {
    RowErrorCode.FIELD_COUNT_MISMATCH: (
        "The row has more or fewer fields than the header has columns (often a value "
        "containing the separator without quotes)."
    ),
    RowErrorCode.MISSING_EMAIL: "The row's email field is empty.",
    RowErrorCode.INVALID_EMAIL: (
        "The row's email address is not valid by email-validator's syntax rules (no DNS "
        "lookup is made)."
    ),
    RowErrorCode.MISSING_PLACEHOLDER_VALUE: ("A column the template uses is empty in this row."),
    RowErrorCode.DUPLICATE_RECIPIENT: (
        "An earlier row of the file has the same address (after normalization); the first row wins."
    ),
    RowErrorCode.FIELD_TOO_LONG: (
        f"A field of the row is longer than `max_field_chars` (default {_LIMITS.max_field_chars:,} "
        "characters)."
    ),
    RowErrorCode.INVALID_SEND_AT: (
        "The row's `send_at` is not RFC 3339 with an offset (`2030-01-31T09:00:00+01:00`), nor "
        "a local date-time (`2030-01-31T09:00`) in a row with a `timezone`."
    ),
    RowErrorCode.INVALID_TIMEZONE: (
        "The row's `timezone` is not an IANA time zone name (`Europe/Paris`)."
    ),
    RowErrorCode.SEND_AT_IN_PAST: (
        f"The row's `send_at` is more than {MAX_PAST.seconds // 60} minutes before the "
        "submission (a time less far back means now)."
    ),
    RowErrorCode.SEND_AT_TOO_FAR: (
        f"The row's `send_at` is more than `max_schedule_days` (default "
        f"{_LIMITS.max_schedule_days}) days after the submission."
    ),
}


class FileError(InputError):
    """The whole file cannot be sent for a reason of ``FileErrorCode`` (an empty file, a
    limit); ``details`` are for the client (the limit, the row found past it)."""

    def __init__(self, code: FileErrorCode, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.details = details


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
    # The header row as written in the file.
    names: tuple[str, ...] = ()


class ValidRow(msgspec.Struct, frozen=True, kw_only=True):
    row: int
    email: str
    # Every column but email, keyed by normalized column name, values as in the file.
    data: dict[str, str]
    # The row's own send time (``send_at`` column), in UTC; None: the transaction's.
    send_at: datetime | None = None


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
    return Header(columns=columns, names=tuple(fields))


async def read_header(
    records: AsyncIterator[Record], *, max_columns: int = _LIMITS.max_columns
) -> Header:
    """The first record that is not a blank line, as the header.

    Raises ``FileError`` ``EMPTY_FILE`` when there is none, ``TOO_MANY_COLUMNS`` when it
    has more than ``max_columns`` columns, and ``HeaderError`` when it cannot be used.
    """
    async for record in records:
        if not record.fields:
            continue
        if len(record.fields) > max_columns:
            raise FileError(
                FileErrorCode.TOO_MANY_COLUMNS,
                f"The header row has {len(record.fields)} columns, more than the "
                f"{max_columns} a file may have; delete the columns the template does not "
                "use, and upload the file again",
                columns=len(record.fields),
                max_columns=max_columns,
            )
        return parse_header(record.fields)
    raise FileError(
        FileErrorCode.EMPTY_FILE,
        "The file is empty: it needs a header row with an email column, then one row per recipient",
    )


def missing_columns(header: Header, placeholders: Collection[str]) -> list[str]:
    """The template's placeholders that no column provides, sorted: a file-level problem."""
    return sorted(set(placeholders).difference(header.columns))


def missing_columns_error(absent: Collection[str]) -> FileError:
    """The file error of a file lacking the columns ``absent`` (``missing_columns``)."""
    return FileError(
        FileErrorCode.MISSING_PLACEHOLDER_COLUMN,
        f"the template uses {', '.join(absent)} but the file has no such column",
        columns=list(absent),
    )


def no_valid_rows_error(invalid: int) -> FileError:
    """The file error of a file whose rows, ``invalid`` of them, are all in error."""
    return FileError(FileErrorCode.NO_VALID_ROWS, "no row of the file can be sent", invalid=invalid)


def validate_row(
    header: Header,
    record: Record,
    placeholders: Collection[str],
    *,
    max_field_chars: int = _LIMITS.max_field_chars,
    now: datetime | None = None,
    max_schedule_days: int = _LIMITS.max_schedule_days,
) -> ValidRow | RowError:
    """Check one data record; the first rule it breaks is its error.

    Blank records (``fields == []``) are the caller's to skip before calling this.
    Placeholders the header lacks are ignored here (see ``missing_columns``). For the rows
    of a whole file use ``RowChecker``, which also finds duplicate recipients. A row's
    send time is judged against ``now`` (default: the current time).
    """
    rules = _RowRules(
        header,
        placeholders,
        max_field_chars,
        _SendTimes(now or datetime.now(UTC), max_schedule_days),
    )
    return rules.validate(record)


class _SendTimes:
    """The ``send_at`` rules: the time rows are judged at and how far ahead they may be."""

    def __init__(self, now: datetime, max_days: int) -> None:
        self.now = now
        self.max_days = max_days

    def check(self, row: int, raw: str, zone_name: str) -> datetime | RowError | None:
        """The row's send time in UTC, None for an empty one, or the error."""
        zone = None
        name = zone_name.strip()
        if name:
            zone = _zone(name)
            if zone is None:
                return RowError(
                    code=RowErrorCode.INVALID_TIMEZONE,
                    message=f"Row {row}: {zone_name!r} is not a time zone name",
                    row=row,
                    field=TIMEZONE_COLUMN,
                    value=zone_name,
                    expected_format=_TIMEZONE_FORMAT,
                    recovery_action=f"Correct the timezone in row {row} {_RESUBMIT}",
                )
        value = raw.strip()
        if not value:
            return None
        at = _parse_date_time(value)
        if at is None or (at.tzinfo is None and zone is None):
            reason = (
                "has no UTC offset and the row has no timezone"
                if at is not None
                else "is not a date and time"
            )
            return RowError(
                code=RowErrorCode.INVALID_SEND_AT,
                message=f"Row {row}: send_at {raw!r} {reason}",
                row=row,
                field=SEND_AT_COLUMN,
                value=raw,
                expected_format=_SEND_AT_FORMAT,
                recovery_action=f"Correct the send_at of row {row} {_RESUBMIT}",
            )
        if at.tzinfo is None:
            at = at.replace(tzinfo=zone)
        at = at.astimezone(UTC)
        problem = check_send_at(at, self.now, self.max_days)
        if problem is SendAtProblem.IN_PAST:
            return RowError(
                code=RowErrorCode.SEND_AT_IN_PAST,
                message=(
                    f"Row {row}: send_at {raw!r} is more than {MAX_PAST.seconds // 60} minutes "
                    "in the past"
                ),
                row=row,
                field=SEND_AT_COLUMN,
                value=raw,
                expected_format=f"a time at most {MAX_PAST.seconds // 60} minutes back",
                recovery_action=(
                    f"Give row {row} a later send_at, or none to send it with the rest, {_RESUBMIT}"
                ),
            )
        if problem is SendAtProblem.TOO_FAR:
            return RowError(
                code=RowErrorCode.SEND_AT_TOO_FAR,
                message=(f"Row {row}: send_at {raw!r} is more than {self.max_days} days ahead"),
                row=row,
                field=SEND_AT_COLUMN,
                value=raw,
                expected_format=f"a time at most {self.max_days} days ahead",
                recovery_action=(
                    f"Give row {row} an earlier send_at, or submit it again later, {_RESUBMIT}"
                ),
            )
        return at


def _parse_date_time(value: str) -> datetime | None:
    """``value`` as a datetime, aware if it has an offset; None if it is not one."""
    text = value.upper()
    if _DATE_TIME.fullmatch(text) is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:  # a month 13, a February 30th
        return None


@functools.lru_cache(maxsize=_ZONE_MEMO)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        # ValueError: not a key at all ("../etc", an absolute path).
        return None


class _RowRules:
    """The rules of ``validate_row`` for one header and template, prepared once."""

    def __init__(
        self,
        header: Header,
        placeholders: Collection[str],
        max_field_chars: int,
        send_times: _SendTimes,
    ) -> None:
        columns = header.columns
        self.columns = columns
        self.max_field_chars = max_field_chars
        self.email_at = columns.index(EMAIL_COLUMN)
        # (name, position) of each placeholder the header has, by name.
        self.required = [
            (name, columns.index(name))
            for name in sorted(set(placeholders))
            if name != EMAIL_COLUMN and name not in SCHEDULE_COLUMNS and name in columns
        ]
        self.send_times = send_times
        self.send_at_at = columns.index(SEND_AT_COLUMN) if SEND_AT_COLUMN in columns else None
        self.timezone_at = columns.index(TIMEZONE_COLUMN) if TIMEZONE_COLUMN in columns else None

    def validate(self, record: Record) -> ValidRow | RowError:
        row, fields = record.row, record.fields
        if len(fields) != len(self.columns):
            return _field_count_mismatch(row, len(fields), len(self.columns))
        if max(map(len, fields)) > self.max_field_chars:
            return self._field_too_long(row, fields)
        raw_email = fields[self.email_at]
        address = raw_email.strip()
        if not address:
            return RowError(
                code=RowErrorCode.MISSING_EMAIL,
                message=f"Row {row} has no email address",
                row=row,
                field=EMAIL_COLUMN,
                value=raw_email,
                expected_format=_EMAIL_FORMAT,
                recovery_action=f"Add the email address in row {row} {_RESUBMIT}",
            )
        try:
            email = normalize_email(address)
        except EmailNotValidError as e:
            return RowError(
                code=RowErrorCode.INVALID_EMAIL,
                message=f"Row {row}: {raw_email!r} is not a valid email address ({e})",
                row=row,
                field=EMAIL_COLUMN,
                value=raw_email,
                expected_format=_EMAIL_FORMAT,
                recovery_action=f"Correct the email address in row {row} {_RESUBMIT}",
            )
        empty = [(name, at) for name, at in self.required if not fields[at].strip()]
        if empty:
            return _missing_placeholder_value(row, [name for name, _ in empty], fields[empty[0][1]])
        send_at = None
        if self.send_at_at is not None or self.timezone_at is not None:
            checked = self.send_times.check(
                row,
                "" if self.send_at_at is None else fields[self.send_at_at],
                "" if self.timezone_at is None else fields[self.timezone_at],
            )
            if isinstance(checked, RowError):
                return checked
            send_at = checked
        data = dict(zip(self.columns, fields, strict=True))
        del data[EMAIL_COLUMN]
        return ValidRow(row=row, email=email, data=data, send_at=send_at)

    def _field_too_long(self, row: int, fields: list[str]) -> RowError:
        limit = self.max_field_chars
        at = next(at for at, field in enumerate(fields) if len(field) > limit)
        column, value = self.columns[at], fields[at]
        return RowError(
            code=RowErrorCode.FIELD_TOO_LONG,
            message=(
                f"Row {row}: the value in column {column!r} has {len(value)} characters, "
                f"more than the {limit} a field may have"
            ),
            row=row,
            field=column,
            value=value[:_VALUE_PREVIEW] + "…",
            expected_format=f"at most {limit} characters",
            recovery_action=f"Shorten the value in column {column!r} of row {row} {_RESUBMIT}",
        )


def normalize_email(address: str) -> str:
    """email-validator's normalized form of ``address`` (syntax only, never DNS).

    Raises ``EmailNotValidError`` with email-validator's own message when it rejects the
    address. ``address`` must be stripped already, as email-validator expects.
    """
    plain = _PLAIN_ADDRESS.fullmatch(address)
    if plain is not None:
        local, domain = plain.groups()
        checked = _check_domain(domain)
        if checked is not None and len(local) + 1 + checked[1] <= EMAIL_MAX_LENGTH:
            if local.lower() in _CASE_INSENSITIVE_MAILBOXES:
                local = local.lower()
            return f"{local}@{checked[0]}"
    # Another shape, a domain email-validator refuses, or too long: let it decide (and say
    # why) on the whole address.
    return validate_email(address, check_deliverability=False).normalized


@functools.lru_cache(maxsize=_DOMAIN_MEMO)
def _check_domain(domain: str) -> tuple[str, int] | None:
    """email-validator's verdict on ``domain``: ``None`` if refused, else its normalized
    form and the longest of the lengths email-validator's address-length rule measures.

    It is asked about the shortest address on the domain: a refusal there (of the domain,
    or of the length) is a refusal of every address on it.
    """
    try:
        checked = validate_email(f"a@{domain}", check_deliverability=False)
    except EmailNotValidError:
        return None
    longest = max(len(domain), len(checked.domain.encode()), len(checked.ascii_domain))
    return checked.domain, longest


class Recipients:
    """The addresses of a file's valid rows so far: a later row with one of them is a
    ``DUPLICATE_RECIPIENT`` (the first row wins).

    Each address is kept as its 64-bit BLAKE2b fingerprint, in one of 4,096 sorted arrays
    chosen by the fingerprint's top 12 bits: 8 bytes an address (~8 MB for 1,000,000 rows)
    and no peak while growing. The fingerprint is the same in every process, so a re-run of
    a file gives the same result. Two different addresses of one file share a fingerprint
    with a chance of about n²/2^65 (3 in 100 million for a million rows); the later one
    would then be refused as a duplicate.
    """

    _SHIFT: Final = 52

    def __init__(self) -> None:
        self._buckets: list[array[int] | None] = [None] * (1 << (64 - self._SHIFT))

    def admit(self, row: ValidRow) -> ValidRow | RowError:
        """``row`` if its address is new to this file (and remember it), else its error."""
        fingerprint = int.from_bytes(blake2b(row.email.encode(), digest_size=8).digest())
        index = fingerprint >> self._SHIFT
        bucket = self._buckets[index]
        if bucket is None:
            bucket = self._buckets[index] = array("Q")
        at = bisect_left(bucket, fingerprint)
        if at < len(bucket) and bucket[at] == fingerprint:
            return _duplicate_recipient(row)
        bucket.insert(at, fingerprint)
        return row


class RowCounter:
    """A file's data rows counted against ``max_rows``: a blank record (a blank line, or a
    row of empty cells as spreadsheets export them) is not a row; the row after the
    ``max_rows``-th raises ``FileError`` ``TOO_MANY_ROWS``."""

    def __init__(self, max_rows: int) -> None:
        self._max_rows = max_rows
        self._rows = 0

    def count(self, record: Record) -> bool:
        """Whether ``record`` is a row (False: blank)."""
        # Every field blank (or none at all) exactly when their concatenation is.
        if not "".join(record.fields).strip():
            return False
        self._rows += 1
        if self._rows > self._max_rows:
            raise FileError(
                FileErrorCode.TOO_MANY_ROWS,
                f"Row {record.row} is past the {self._max_rows} rows a file may have; split "
                "the file into smaller ones and upload each",
                row=record.row,
                max_rows=self._max_rows,
            )
        return True


class RowChecker:
    """Every rule for the data records of one file, in order; one checker per file.

    ``check`` answers ``None`` for a blank record (a blank line, or a row of empty cells
    as spreadsheets export them): it keeps its row number but is neither a message nor an
    error, and it does not count towards ``max_rows``. The record after the ``max_rows``-th
    that does raises ``FileError`` ``TOO_MANY_ROWS``. Rows' send times are judged against
    ``now`` (default: when the checker is made), the same for every row of the file.
    """

    def __init__(
        self,
        header: Header,
        placeholders: Collection[str],
        *,
        max_rows: int = _LIMITS.max_rows,
        max_field_chars: int = _LIMITS.max_field_chars,
        now: datetime | None = None,
        max_schedule_days: int = _LIMITS.max_schedule_days,
    ) -> None:
        send_times = _SendTimes(now or datetime.now(UTC), max_schedule_days)
        self._rules = _RowRules(header, placeholders, max_field_chars, send_times)
        self._recipients = Recipients()
        self._rows = RowCounter(max_rows)

    def check(self, record: Record) -> ValidRow | RowError | None:
        if not self._rows.count(record):
            return None
        result = self._rules.validate(record)
        if isinstance(result, RowError):
            return result
        return self._recipients.admit(result)


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


def _duplicate_recipient(row: ValidRow) -> RowError:
    return RowError(
        code=RowErrorCode.DUPLICATE_RECIPIENT,
        message=(
            f"Row {row.row}: {row.email} is the address of an earlier row too; only the "
            "first row with an address becomes a message"
        ),
        row=row.row,
        field=EMAIL_COLUMN,
        value=row.email,
        expected_format="an address no earlier row of the file has",
        recovery_action=(
            f"Nothing, if row {row.row} repeats its recipient by mistake; otherwise correct "
            f"its email address {_RESUBMIT}"
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
