"""Streaming CSV parsing: byte chunks in, numbered records out (ARCHITECTURE §2, §5).

The chunks come from S3 with arbitrary boundaries: one may end inside a UTF-8 character,
between the CR and LF of a line end, or inside a quoted field. Memory stays bounded by the
chunk size plus the longest record (``max_record_chars``), whatever the file's size.

How: an incremental UTF-8 decoder turns bytes into text; the text is cut into physical
lines (CRLF, LF or CR); the complete lines of each chunk go to one ``csv.reader`` (C speed)
whose line source raises ``_NeedMore`` when it runs dry. Every record the reader finishes
is yielded; the lines of a record it had not finished (a quoted field still open) are kept
and parsed again, from the record's first line, once more lines arrive.

Row numbers are spreadsheet rows: the header is row 1 and each record after it counts one,
blank lines included (yielded with ``fields == []``), a record with quoted line breaks once.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import re
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Final

import msgspec

from shared.errors import InputError

__all__ = ["DELIMITERS", "MAX_RECORD_CHARS", "Record", "detect_delimiter", "read_records"]

# Candidates, in the order that breaks a tie.
DELIMITERS: Final = (",", ";", "\t")
MAX_RECORD_CHARS: Final = 1 << 20

# str.splitlines also breaks on these; in a CSV file they are field content.
_OTHER_LINE_BREAKS: Final = re.compile("[\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


class Record(msgspec.Struct, frozen=True, kw_only=True):
    row: int
    fields: list[str]


class _NeedMore(Exception):
    """The csv reader asked for a line the chunks have not delivered yet."""


class _Dry(Iterator[str]):
    """The end of the lines at hand: asking for another one raises ``_NeedMore``."""

    def __next__(self) -> str:
        raise _NeedMore


_DRY: Final = _Dry()


class _Parser:
    """Text in, records out; holds at most one unfinished record and one partial line."""

    def __init__(self, max_record_chars: int) -> None:
        self._max = max_record_chars
        self._tail: list[str] = []  # a line without its end yet, in pieces
        self._tail_chars = 0
        self._pending: list[str] = []  # complete lines of an unfinished record
        self._pending_chars = 0
        self._delimiter: str | None = None
        self._at_start = True  # no text seen yet: a BOM may come
        self._nul = False  # a NUL seen: check every record from now on
        self.row = 0  # the row of the last record out

    def feed(self, text: str, *, final: bool = False) -> list[Record]:
        if self._at_start and text:
            text = text.removeprefix("\ufeff")
            self._at_start = False
        if "\x00" in text:
            self._nul = True
        if not final and "\n" not in text and "\r" not in text:
            self._tail.append(text)
            self._tail_chars += len(text)
            self._check_size()
            return []
        if self._tail:
            self._tail.append(text)
            text = "".join(self._tail)
            self._tail.clear()
            self._tail_chars = 0
        lines = _split_lines(text)
        if not final and lines:
            last = lines[-1]
            # A line is complete at its LF; a CR may be the first half of a CRLF.
            if not last.endswith("\n"):
                self._tail.append(lines.pop())
                self._tail_chars = len(last)
        if self._pending:
            lines[:0] = self._pending
        if not lines:
            self._check_size()
            return []
        if self._delimiter is None:
            self._delimiter = detect_delimiter(lines[0])
        records = self._parse(lines)
        if final and self._pending:
            raise InputError(
                f'Row {self.row + 1}: a quoted value is never closed (a " without its '
                'pair); put a double quote at the end of the value, or write a literal " '
                'as "", and upload the file again'
            )
        self._check_size()
        return records

    def _parse(self, lines: list[str]) -> list[Record]:
        reader = csv.reader(itertools.chain(lines, _DRY), delimiter=self._delimiter or ",")
        records: list[Record] = []
        row = self.row
        done = 0
        # Look at each record only when one of them may break a rule: rare, and slower.
        inspect = self._nul or sum(map(len, lines)) > self._max
        try:
            for fields in reader:
                row += 1
                if inspect:
                    self._inspect(row, fields)
                records.append(Record(row=row, fields=fields))
                done = reader.line_num
        except _NeedMore:
            pass
        except csv.Error as e:
            raise InputError(f"Row {row + 1}: {e}; fix the row and upload the file again") from e
        self.row = row
        if done == len(lines):
            self._pending.clear()
            self._pending_chars = 0
        else:
            self._pending = lines[done:]
            self._pending_chars = sum(map(len, self._pending))
        return records

    def _inspect(self, row: int, fields: list[str]) -> None:
        if self._nul and any("\x00" in field for field in fields):
            raise InputError(
                f"Row {row} contains a NUL character (byte 00), which CSV text never has: is "
                "the file UTF-16 or a spreadsheet's own format? Save it as CSV UTF-8 and "
                "upload it again"
            )
        if sum(map(len, fields)) > self._max:
            raise InputError(
                f"Row {row} is longer than {self._max} characters; shorten it and upload the "
                "file again"
            )

    def _check_size(self) -> None:
        if self._pending_chars + self._tail_chars > self._max:
            raise InputError(
                f"Row {self.row + 1} is longer than {self._max} characters (is a quoted "
                "value missing its closing quote?); shorten or fix the row and upload the "
                "file again"
            )


async def read_records(
    chunks: AsyncIterator[bytes], *, max_record_chars: int = MAX_RECORD_CHARS
) -> AsyncGenerator[Record, None]:
    """Yield every record of a UTF-8 CSV file, the header first (row 1).

    Raises ``InputError`` for bytes that are not UTF-8, a NUL character (UTF-16 text
    without a BOM is valid UTF-8 full of them), a quoted value never closed, or a record
    longer than ``max_record_chars`` characters; each message names the row.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    parser = _Parser(max_record_chars)
    async for chunk in chunks:
        for record in _records(decoder, parser, chunk, final=False):
            yield record
    for record in _records(decoder, parser, b"", final=True):
        yield record


def _records(
    decoder: codecs.IncrementalDecoder, parser: _Parser, chunk: bytes, *, final: bool
) -> Iterator[Record]:
    try:
        text = decoder.decode(chunk, final)
    except UnicodeDecodeError as e:
        # Records before the bad bytes are good; the one they are in is the next row.
        yield from parser.feed(e.object[: e.start].decode("utf-8"))
        bad = e.object[e.start : e.end].hex(" ")
        raise InputError(
            f"Row {parser.row + 1} is not valid UTF-8 text (bytes {bad}); save the file "
            "as CSV UTF-8 and upload it again"
        ) from e
    yield from parser.feed(text, final=final)


def detect_delimiter(line: str) -> str:
    """The candidate occurring most often outside quotes in ``line``; a comma by default."""
    counts = dict.fromkeys(DELIMITERS, 0)
    if '"' not in line:
        for delimiter in DELIMITERS:
            counts[delimiter] = line.count(delimiter)
    else:
        quoted = False
        for char in line:
            if char == '"':
                quoted = not quoted
            elif not quoted and char in counts:
                counts[char] += 1
    best = max(DELIMITERS, key=counts.__getitem__)  # max keeps the first of equals
    return best if counts[best] else ","


def _split_lines(text: str) -> list[str]:
    """Cut ``text`` after each CRLF, LF or CR, keeping the line ends."""
    lines = text.splitlines(keepends=True)
    if not _OTHER_LINE_BREAKS.search(text):
        return lines
    joined: list[str] = []
    carry = ""
    for line in lines:
        if line.endswith(("\n", "\r")):
            joined.append(carry + line)
            carry = ""
        else:
            carry += line
    if carry:
        joined.append(carry)
    return joined
