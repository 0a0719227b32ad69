from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from services.ingest.csv_source import DELIMITERS, Record, detect_delimiter, read_records
from shared.errors import InputError


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def _read(data: bytes, size: int | None = None, **options: int) -> list[Record]:
    chunks = _chunks(data, size or max(len(data), 1))
    return [record async for record in read_records(chunks, **options)]


def _rows(records: list[Record]) -> list[tuple[int, list[str]]]:
    return [(record.row, record.fields) for record in records]


async def test_header_is_row_1_and_records_follow() -> None:
    records = await _read(b"email,name\na@example.com,Ada\nb@example.com,Bob\n")
    assert _rows(records) == [
        (1, ["email", "name"]),
        (2, ["a@example.com", "Ada"]),
        (3, ["b@example.com", "Bob"]),
    ]


async def test_an_empty_file_has_no_records() -> None:
    assert await _read(b"") == []


async def test_the_last_line_needs_no_line_end() -> None:
    assert _rows(await _read(b"email\na@example.com")) == [(1, ["email"]), (2, ["a@example.com"])]


async def test_a_bom_is_stripped() -> None:
    records = await _read(b"\xef\xbb\xbfemail,name\r\na@example.com,Ada\r\n")
    assert records[0].fields == ["email", "name"]


@pytest.mark.parametrize("end", [b"\r\n", b"\n", b"\r"])
async def test_every_line_end_works(end: bytes) -> None:
    data = end.join([b"email,name", b"a@example.com,Ada", b"", b"b@example.com,Bob"]) + end
    assert _rows(await _read(data)) == [
        (1, ["email", "name"]),
        (2, ["a@example.com", "Ada"]),
        (3, []),
        (4, ["b@example.com", "Bob"]),
    ]


async def test_blank_lines_are_records_and_count() -> None:
    records = await _read(b"email\n\n\na@example.com\n")
    assert _rows(records) == [(1, ["email"]), (2, []), (3, []), (4, ["a@example.com"])]


async def test_quoted_line_breaks_make_one_row() -> None:
    data = b'email,note\na@example.com,"one\r\ntwo\nthree"\nb@example.com,x\n'
    assert _rows(await _read(data)) == [
        (1, ["email", "note"]),
        (2, ["a@example.com", "one\r\ntwo\nthree"]),
        (3, ["b@example.com", "x"]),
    ]


async def test_rfc4180_quoting() -> None:
    data = b'email,name\na@example.com,"Lovelace, Ada ""the first"""\n'
    assert (await _read(data))[1].fields == ["a@example.com", 'Lovelace, Ada "the first"']


async def test_line_separators_other_than_cr_and_lf_are_content() -> None:
    data = "email,note\na@example.com,x\u2028y\x0bz\n".encode()
    assert _rows(await _read(data))[1] == (2, ["a@example.com", "x\u2028y\x0bz"])


async def test_a_multibyte_character_split_across_chunks() -> None:
    data = "email,name\na@example.com,Zoë €\n".encode()
    split = data.index("ë".encode()) + 1
    chunks = [data[:split], data[split:]]

    async def two_chunks() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    records = [record async for record in read_records(two_chunks())]
    assert records[1].fields == ["a@example.com", "Zoë €"]


SAMPLE = (
    "\ufeffEmail;First Name;Note\r\n"
    'a@example.com;Zoë;"multi\r\nline; with ""quotes"""\r\n'
    "\r\n"
    "b@example.com;Bob;€\r"
    'c@example.com;Cy;"\n"'
).encode()


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 64])
async def test_any_chunking_gives_the_same_records(size: int) -> None:
    assert await _read(SAMPLE, size) == await _read(SAMPLE)


async def test_sample_records() -> None:
    assert _rows(await _read(SAMPLE)) == [
        (1, ["Email", "First Name", "Note"]),
        (2, ["a@example.com", "Zoë", 'multi\r\nline; with "quotes"']),
        (3, []),
        (4, ["b@example.com", "Bob", "€"]),
        (5, ["c@example.com", "Cy", "\n"]),
    ]


@pytest.mark.parametrize(
    ("line", "delimiter"),
    [
        ("email,name\n", ","),
        ("email;name;city\n", ";"),
        ("email\tname\n", "\t"),
        ('email;"a,b,c";x\n', ";"),
        ("email\n", ","),
        ("email,name;city\n", ","),
    ],
)
def test_delimiter_detection(line: str, delimiter: str) -> None:
    assert detect_delimiter(line) == delimiter


async def test_semicolon_and_tab_files() -> None:
    assert (await _read(b"email;name\na@example.com;A,da\n"))[1].fields == [
        "a@example.com",
        "A,da",
    ]
    assert (await _read(b"email\tname\na@example.com\tAda\n"))[1].fields == [
        "a@example.com",
        "Ada",
    ]


@pytest.mark.parametrize("size", [1, 1000])
async def test_invalid_utf8_names_the_row(size: int) -> None:
    data = b"email,name\na@example.com,Ada\nb@example.com,Caf\xe9\n"
    with pytest.raises(InputError, match=r"Row 3 is not valid UTF-8.*save the file as CSV UTF-8"):
        await _read(data, size)


async def test_a_truncated_character_at_the_end_is_invalid() -> None:
    with pytest.raises(InputError, match="Row 2 is not valid UTF-8"):
        await _read(b"email\na@example.com,\xc3")


async def test_an_unclosed_quote_names_its_row() -> None:
    with pytest.raises(InputError, match=r"Row 3: a quoted value is never closed"):
        await _read(b'email,name\na@example.com,Ada\nb@example.com,"Bob\nc@example.com,Cy\n')


async def test_a_record_longer_than_the_limit_is_refused() -> None:
    data = b'email,note\na@example.com,"' + b"x\n" * 100 + b'"\n'
    with pytest.raises(InputError, match="Row 2 is longer than 50 characters"):
        await _read(data, 16, max_record_chars=50)


async def test_a_nul_character_names_its_row() -> None:
    with pytest.raises(InputError, match=r"Row 3 contains a NUL character"):
        await _read(b"email,name\na@example.com,Ada\nb@example.com,B\x00b\n", 4)


async def test_utf16_without_a_bom_is_refused_at_row_1() -> None:
    with pytest.raises(InputError, match=r"Row 1 contains a NUL character.*UTF-16"):
        await _read("email,name\r\na@example.com,Ada\r\n".encode("utf-16-le"))


@pytest.mark.parametrize("size", [16, 1 << 20])
async def test_a_complete_record_longer_than_the_limit_is_refused(size: int) -> None:
    data = b"email,note\na@example.com,ok\nb@example.com," + b"x" * 60 + b"\n"
    with pytest.raises(InputError, match="Row 3 is longer than 50 characters"):
        await _read(data, size, max_record_chars=50)


# Any text but NUL (refused on purpose) and surrogates (not encodable).
_FIELD = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12)
_QUOTING = st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC])


@st.composite
def _csv_files(draw: st.DrawFn) -> tuple[list[list[str]], bytes, list[int]]:
    """A header (whose separators tell the delimiter) and any rows, written by csv.writer."""
    width = draw(st.integers(2, 4))
    header = ["email", *(f"c{n}" for n in range(1, width))]
    rows = draw(st.lists(st.lists(_FIELD, max_size=5), max_size=8))
    delimiter = draw(st.sampled_from(DELIMITERS))
    text = io.StringIO()
    writer = csv.writer(
        text,
        delimiter=delimiter,
        quoting=draw(_QUOTING),
        lineterminator=draw(st.sampled_from(["\r\n", "\n"])),
    )
    writer.writerows([header, *rows])
    # Only what round-trips through csv.reader itself: with "\n" line ends, csv.writer
    # leaves a "\r" unquoted, which no reader can tell from a line end.
    reread = csv.reader(io.StringIO(text.getvalue(), newline=""), delimiter=delimiter)
    assume(list(reread) == [header, *rows])
    data = (draw(st.sampled_from(["", "\ufeff"])) + text.getvalue()).encode()
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=6)))
    return [header, *rows], data, cuts


@settings(max_examples=400, deadline=None)
@given(_csv_files())
def test_any_csv_writer_output_round_trips(case: tuple[list[list[str]], bytes, list[int]]) -> None:
    table, data, cuts = case
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]

    async def chunks() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    async def read() -> list[Record]:
        return [record async for record in read_records(chunks())]

    records = asyncio.run(read())
    # A row csv.writer writes as a blank line (no fields) comes back as fields == [].
    assert [record.fields for record in records] == table
    assert [record.row for record in records] == list(range(1, len(table) + 1))
