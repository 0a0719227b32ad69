"""Properties on bad input: whatever a client sends, only our own errors come out.

CSV: any bytes, cut into chunks anywhere, go through ``read_records``, ``read_header`` and
``RowChecker`` and end as records checked one by one, or as an ``InputError`` (the parser's,
a ``HeaderError`` or a ``FileError``) whose code is in the catalogue; every rejected row is a
``RowError`` with a ``RowErrorCode``. Nothing else is raised.

Templates: a valid template renders any placeholder values (escaped in the HTML part only);
any template source compiles and renders or fails with ``TemplateError``, nothing else.

Example counts are modest: the file runs in a few seconds.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Final

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markupsafe import escape

from services.ingest.csv_source import read_records
from services.ingest.validation import (
    FILE_ERRORS,
    HEADER_ERRORS,
    ROW_ERRORS,
    FileError,
    HeaderError,
    RowChecker,
    ValidRow,
    read_header,
)
from shared.documents import RowError
from shared.errors import InputError, TemplateError
from shared.template import compile_template

_SETTINGS: Final = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
_NOW: Final = datetime(2030, 1, 1, 12, tzinfo=UTC)

# --- CSV -----------------------------------------------------------------------------------


class _Limits:
    """Small limits, so that generated files reach them."""

    max_rows: Final = 6
    max_columns: Final = 5
    max_field_chars: Final = 24
    max_record_chars: Final = 160


async def _chunks(pieces: list[bytes]) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


async def _ingest(pieces: list[bytes], placeholders: frozenset[str]) -> list[object]:
    records = read_records(_chunks(pieces), max_record_chars=_Limits.max_record_chars)
    header = await read_header(records, max_columns=_Limits.max_columns)
    checker = RowChecker(
        header,
        placeholders,
        max_rows=_Limits.max_rows,
        max_field_chars=_Limits.max_field_chars,
        now=_NOW,
    )
    return [checker.check(record) async for record in records]


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted(min(cut, len(data)) for cut in cuts)
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def _run(data: bytes, cuts: list[int], placeholders: frozenset[str]) -> list[object] | InputError:
    try:
        return asyncio.run(_ingest(_cut(data, cuts), placeholders))
    except InputError as e:
        return e


def _check_outcome(data: bytes, cuts: list[int], placeholders: frozenset[str]) -> None:
    """Run the whole ingest path; fail on anything but a catalogued outcome."""
    outcome = _run(data, cuts, placeholders)
    if isinstance(outcome, HeaderError):
        assert outcome.code in HEADER_ERRORS
        assert str(outcome)
    elif isinstance(outcome, FileError):
        assert outcome.code in FILE_ERRORS
        assert str(outcome)
    elif isinstance(outcome, InputError):
        # The parser's own refusal (CSV_PARSING_ERROR upstream): not UTF-8, a NUL, a quote
        # never closed, a record too long; the message names the row.
        assert type(outcome) is InputError
        assert "Row " in str(outcome)
    else:
        for result in outcome:
            assert result is None or isinstance(result, ValidRow | RowError)
            if isinstance(result, RowError):
                assert result.code in ROW_ERRORS
                assert result.message
                assert result.recovery_action
                assert result.row >= 2


_CUTS: Final = st.lists(st.integers(0, 400), max_size=5)
_PLACEHOLDERS: Final = st.frozensets(
    st.sampled_from(["name", "city", "email", "send_at", "timezone", "absent"]), max_size=4
)


@_SETTINGS
@given(st.binary(max_size=400), _CUTS, _PLACEHOLDERS)
def test_any_bytes_end_in_a_catalogued_outcome(
    data: bytes, cuts: list[int], placeholders: frozenset[str]
) -> None:
    _check_outcome(data, cuts, placeholders)


_HEADERS: Final = st.sampled_from(
    [
        "",
        "email\n",
        "email,name\n",
        "Email;First Name;City\r\n",
        "email\tname\tsend_at\ttimezone\n",
        "email,name,send_at,timezone\r\n",
        "\ufeffemail,name,name\n",
        "email,,name\n",
        "a,b,c,d,e,f,email\n",
    ]
)
_CSV_CHARS: Final = (
    st.sampled_from(list('ab@.xé€,;\t"\r\n \x00\ufeff\u2028\x85-+:TZ0129/')) | st.characters()
)


@_SETTINGS
@given(_HEADERS, st.text(_CSV_CHARS, max_size=300), _CUTS, _PLACEHOLDERS)
def test_any_text_after_a_header_ends_in_a_catalogued_outcome(
    header: str, body: str, cuts: list[int], placeholders: frozenset[str]
) -> None:
    data = (header + body).encode("utf-8", "surrogatepass")
    _check_outcome(data, cuts, placeholders)


_FIELDS: Final = st.sampled_from(
    [
        "",
        " ",
        "a@example.com",
        "A@Example.COM",
        "b@example.com",
        "not an address",
        "a@@example.com",
        "postmaster@example.com",
        "zoë@exämple.com",
        "Ada",
        "x" * 30,
        "2030-01-31T09:00",
        "2030-01-31T09:00:00+01:00",
        "2030-02-30T09:00",
        "1999-01-01T00:00Z",
        "2099-01-01T00:00:00Z",
        "tomorrow",
        "Europe/Paris",
        "../etc/passwd",
        "/etc/localtime",
        "Nowhere/Zone",
        "UTC",
    ]
) | st.text(max_size=30)


_EMAILS: Final = st.sampled_from(
    ["a@example.com", "A@EXAMPLE.com", "b@example.com", "c@example.org", "", " ", "bad", "x@y"]
) | st.emails().map(str)


@st.composite
def _tables(draw: st.DrawFn) -> bytes:
    header = draw(
        st.sampled_from(
            [
                ["email", "name"],
                ["email", "name", "send_at", "timezone"],
                ["Email", "City", "Send At"],
                ["email", "send_at"],
            ]
        )
    )
    # Mostly rows of the header's width, an address first, so that every rule is reached.
    width = len(header) - 1
    fitting = st.tuples(_EMAILS, st.lists(_FIELDS, min_size=width, max_size=width)).map(
        lambda row: [row[0], *row[1]]
    )
    rows = draw(st.lists(fitting | st.lists(_FIELDS, max_size=5), max_size=10))
    text = io.StringIO()
    csv.writer(text, delimiter=draw(st.sampled_from([",", ";", "\t"]))).writerows([header, *rows])
    return text.getvalue().encode("utf-8", "surrogatepass")


@_SETTINGS
@given(_tables(), _CUTS, _PLACEHOLDERS)
def test_any_table_ends_in_a_catalogued_outcome(
    data: bytes, cuts: list[int], placeholders: frozenset[str]
) -> None:
    _check_outcome(data, cuts, placeholders)


# --- templates -----------------------------------------------------------------------------

_TEMPLATE: Final = compile_template(
    "Hello {{ name }} from {{ city }}",
    '<p title="{{ name }}">{{ name }}, {{ city|upper }} {{ name ~ city }}</p>',
    "Hi {{ name }} of {{ city }}\n",
)


@_SETTINGS
@given(st.text(), st.text())
def test_a_valid_template_renders_any_values(name: str, city: str) -> None:
    rendered = _TEMPLATE.render({"name": name, "city": city})
    assert rendered.text == f"Hi {name} of {city}\n"
    assert rendered.html == (
        f'<p title="{escape(name)}">{escape(name)}, {escape(city.upper())} '
        f"{escape(name + city)}</p>"
    )
    assert "\n" not in rendered.subject
    assert "\r" not in rendered.subject


@_SETTINGS
@given(st.dictionaries(st.sampled_from(["name", "city", "other"]), st.text(), max_size=3))
def test_rendering_raises_only_template_errors(data: dict[str, str]) -> None:
    if {"name", "city"} <= data.keys():
        _TEMPLATE.render(data)
    else:
        # Only a missing placeholder can fail this template.
        with pytest.raises(TemplateError, match="is undefined"):
            _TEMPLATE.render(data)


_TOKENS: Final = st.sampled_from(
    [
        "{{ ",
        " }}",
        "{% ",
        " %}",
        "{# ",
        " #}",
        "name",
        "city",
        " 2 ",
        " 0 ",
        " -1 ",
        "'x'",
        "+",
        "-",
        "/",
        "//",
        "%",
        "~",
        "(",
        ")",
        "[",
        "]",
        ",",
        ".",
        ":",
        "|upper",
        "|int",
        "|length",
        "|first",
        "|join",
        "|attr('__class__')",
        ".__class__",
        "range(",
        "if ",
        " else ",
        "for i in ",
        "endfor",
        "endif",
        "set x = ",
        "x",
        "i",
        "loop.index",
        "<b>",
        "\n",
    ]
)


@_SETTINGS
@given(
    st.lists(_TOKENS, max_size=20).map("".join),
    st.dictionaries(st.sampled_from(["name", "city", "x"]), st.text(max_size=10), max_size=3),
)
def test_any_template_source_fails_only_with_template_errors(
    source: str, data: dict[str, str]
) -> None:
    # No "*": the multiplication hogs are tests/unit/test_hostile_templates.py's business.
    error: TemplateError | None = None
    try:
        compile_template(source, source, source).render(data)
    except TemplateError as e:
        error = e
    assert error is None or str(error)
