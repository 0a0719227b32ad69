"""Per-row send times (``send_at``, ``timezone``) and the slot rules of ``shared.schedule``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.ingest.csv_source import Record
from services.ingest.validation import RowErrorCode, ValidRow, parse_header, validate_row
from shared.documents import RowError
from shared.schedule import SendAtProblem, check_send_at, fire_time, schedule_stamp, slot_of

NOW = datetime(2030, 1, 10, 12, 0, tzinfo=UTC)
HEADER = parse_header(["email", "name", "Send At", "Timezone"])


def _check(send_at: str, zone: str = "", **limits: int) -> ValidRow | RowError:
    record = Record(row=7, fields=["a@example.org", "Ann", send_at, zone])
    return validate_row(HEADER, record, ["name"], now=NOW, **limits)


def _at(send_at: str, zone: str = "") -> datetime | None:
    result = _check(send_at, zone)
    assert isinstance(result, ValidRow), result
    return result.send_at


def _code(send_at: str, zone: str = "", **limits: int) -> tuple[str, str | None]:
    result = _check(send_at, zone, **limits)
    assert isinstance(result, RowError), result
    assert result.row == 7
    assert result.expected_format
    return result.code, result.field


@pytest.mark.parametrize(
    ("send_at", "utc"),
    [
        ("2030-01-11T09:00:00+01:00", "2030-01-11T08:00:00"),
        ("2030-01-11T09:00:00Z", "2030-01-11T09:00:00"),
        ("2030-01-11 09:00:00z", "2030-01-11T09:00:00"),
        ("2030-01-11t09:00-05:00", "2030-01-11T14:00:00"),
        ("2030-01-11T09:00:00.123456789+00:00", "2030-01-11T09:00:00.123456"),
        (" 2030-01-11T09:00:00Z ", "2030-01-11T09:00:00"),
    ],
)
def test_rfc_3339_times_with_an_offset(send_at: str, utc: str) -> None:
    assert _at(send_at) == datetime.fromisoformat(utc).replace(tzinfo=UTC)


def test_local_times_are_read_in_the_rows_own_zone() -> None:
    # 09:00 for each recipient: three different moments.
    assert _at("2030-01-11T09:00", "Europe/Paris") == datetime(2030, 1, 11, 8, tzinfo=UTC)
    assert _at("2030-01-11T09:00", "America/New_York") == datetime(2030, 1, 11, 14, tzinfo=UTC)
    assert _at("2030-01-11T09:00", "Asia/Kolkata") == datetime(2030, 1, 11, 3, 30, tzinfo=UTC)
    # Summer time is the zone's, not today's.
    assert _at("2030-01-20T09:00", "Europe/Paris") == datetime(2030, 1, 20, 8, tzinfo=UTC)


def test_an_offset_wins_over_the_zone() -> None:
    assert _at("2030-01-11T09:00Z", "Europe/Paris") == datetime(2030, 1, 11, 9, tzinfo=UTC)


def test_a_local_time_a_clock_change_skips_or_repeats() -> None:
    # New York skips 02:00-03:00 on 2030-03-10 (02:30 is read at the old offset, -05:00)
    # and repeats 01:00-02:00 on 2030-11-03 (01:30 is its first occurrence, -04:00).
    assert _check_far("2030-03-10T02:30", "America/New_York") == datetime(
        2030, 3, 10, 7, 30, tzinfo=UTC
    )
    assert _check_far("2030-11-03T01:30", "America/New_York") == datetime(
        2030, 11, 3, 5, 30, tzinfo=UTC
    )


def _check_far(send_at: str, zone: str) -> datetime | None:
    """A time far from NOW, judged the day before it."""
    record = Record(row=2, fields=["a@example.org", "Ann", send_at, zone])
    day_before = datetime.fromisoformat(send_at).replace(tzinfo=UTC) - timedelta(days=1)
    result = validate_row(HEADER, record, [], now=day_before, max_schedule_days=2)
    assert isinstance(result, ValidRow), result
    return result.send_at


def test_empty_means_the_transactions_time() -> None:
    assert _at("") is None
    assert _at("  ", "Europe/Paris") is None


@pytest.mark.parametrize(
    ("send_at", "zone", "code", "field"),
    [
        ("2030-01-11T09:00", "", RowErrorCode.INVALID_SEND_AT, "send_at"),
        ("tomorrow 9am", "", RowErrorCode.INVALID_SEND_AT, "send_at"),
        ("2030-01-11", "", RowErrorCode.INVALID_SEND_AT, "send_at"),
        ("2030-02-30T09:00Z", "", RowErrorCode.INVALID_SEND_AT, "send_at"),
        ("1893456000", "", RowErrorCode.INVALID_SEND_AT, "send_at"),
        ("2030-01-11T09:00", "Mars/Olympus", RowErrorCode.INVALID_TIMEZONE, "timezone"),
        ("", "../../etc/passwd", RowErrorCode.INVALID_TIMEZONE, "timezone"),
        ("2030-01-10T11:54:59Z", "", RowErrorCode.SEND_AT_IN_PAST, "send_at"),
        ("2030-02-09T12:00:01Z", "", RowErrorCode.SEND_AT_TOO_FAR, "send_at"),
    ],
)
def test_bad_send_times_are_row_errors(send_at: str, zone: str, code: str, field: str) -> None:
    assert _code(send_at, zone) == (code, field)


def test_the_limits() -> None:
    # Up to 5 minutes back means now; up to max_schedule_days ahead.
    assert _at("2030-01-10T11:55:00Z") == NOW - timedelta(minutes=5)
    assert _at("2030-02-09T12:00:00Z") == NOW + timedelta(days=30)
    assert _code("2030-01-12T12:00:01Z", max_schedule_days=2)[0] == RowErrorCode.SEND_AT_TOO_FAR


def test_schedule_columns_are_not_placeholders_that_must_be_filled() -> None:
    record = Record(row=3, fields=["a@example.org", "Ann", "", ""])
    result = validate_row(HEADER, record, ["name", "send_at", "timezone"], now=NOW)
    assert isinstance(result, ValidRow)
    assert result.data == {"name": "Ann", "send_at": "", "timezone": ""}


def test_a_file_without_the_columns_has_no_row_times() -> None:
    record = Record(row=3, fields=["a@example.org", "Ann"])
    result = validate_row(parse_header(["email", "name"]), record, ["name"])
    assert isinstance(result, ValidRow)
    assert result.send_at is None


def test_slots_and_fire_times() -> None:
    at = datetime(2030, 1, 11, 9, 0, 59, 1, tzinfo=UTC)
    assert slot_of(at) == "20300111T0900Z"
    assert slot_of(at.astimezone(UTC).replace(second=0, microsecond=0)) == "20300111T0900Z"
    assert fire_time(at) == datetime(2030, 1, 11, 9, 1, tzinfo=UTC)
    assert fire_time(at.replace(microsecond=0)) == at.replace(microsecond=0)
    assert schedule_stamp(at) == "2030-01-11T09:01:00Z"
    assert check_send_at(NOW - timedelta(minutes=6), NOW, 30) is SendAtProblem.IN_PAST
    assert check_send_at(NOW + timedelta(days=31), NOW, 30) is SendAtProblem.TOO_FAR
    assert check_send_at(NOW, NOW, 30) is None
