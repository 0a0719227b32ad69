"""Reading a multipart/form-data body as it arrives (python-multipart's streaming parser).

``read_form`` turns the request's byte chunks into events: each text field whole (they
are small and bounded), each file field as ``FileStarted``, its ``FileData`` chunks and
``FileEnded`` — so a file of any size passes through in pieces the size of the chunks
the server hands us. Everything but the files' bytes is bounded here: the size of a text
field, the number of parts and the size of part headers.

Use it under ``contextlib.aclosing`` so an early exit closes the request stream too.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import TYPE_CHECKING, Final

import msgspec
from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header

from services.gateway.errors import ApiError, Code

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

__all__ = ["FieldRead", "FileData", "FileEnded", "FileStarted", "FormEvent", "read_form"]

MAX_FIELD_BYTES: Final = 8 * 1024
MAX_PARTS: Final = 16


class FieldRead(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    value: str


class FileStarted(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    filename: str | None


class FileData(msgspec.Struct, frozen=True, kw_only=True):
    data: bytes


class FileEnded(msgspec.Struct, frozen=True, kw_only=True):
    name: str


FormEvent = FieldRead | FileStarted | FileData | FileEnded


def _invalid(message: str) -> ApiError:
    return ApiError(Code.INVALID_FORM, message)


class _Collector:
    """python-multipart's callbacks, gathering the events of one ``write`` call."""

    def __init__(self, file_fields: frozenset[str]) -> None:
        self.file_fields = file_fields
        self.events: list[FormEvent] = []
        self.ended = False
        self.parts = 0
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._name = ""
        self._is_file = False
        self._value = bytearray()

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field_data,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def drain(self) -> list[FormEvent]:
        events, self.events = self.events, []
        return events

    def _part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise _invalid(f"more than {MAX_PARTS} form fields")
        self._headers = {}
        self._value.clear()

    def _header_field_data(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[bytes(self._header_field).lower()] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        disposition, params = parse_options_header(self._headers.get(b"content-disposition"))
        name = params.get(b"name")
        if disposition != b"form-data" or name is None:
            raise _invalid("a form part without a Content-Disposition: form-data name")
        self._name = _text(name)
        self._is_file = self._name in self.file_fields
        if self._is_file:
            filename = params.get(b"filename")
            self.events.append(
                FileStarted(name=self._name, filename=None if filename is None else _text(filename))
            )

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            self.events.append(FileData(data=bytes(data[start:end])))
            return
        self._value += data[start:end]
        if len(self._value) > MAX_FIELD_BYTES:
            raise _invalid(f"form field {self._name!r} is longer than {MAX_FIELD_BYTES} bytes")

    def _part_end(self) -> None:
        if self._is_file:
            self.events.append(FileEnded(name=self._name))
        else:
            self.events.append(FieldRead(name=self._name, value=_text(bytes(self._value))))

    def _end(self) -> None:
        self.ended = True


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _invalid("form data that is not UTF-8") from e


def _boundary(content_type: str | None) -> bytes:
    media_type, params = parse_options_header(content_type)
    if media_type != b"multipart/form-data":
        raise ApiError(
            Code.UNSUPPORTED_MEDIA_TYPE,
            "the body must be multipart/form-data",
            details={"content_type": content_type},
        )
    boundary = params.get(b"boundary")
    if not boundary:
        raise _invalid("multipart/form-data without a boundary")
    return boundary


async def read_form(
    chunks: AsyncGenerator[bytes, None],
    content_type: str | None,
    *,
    file_fields: frozenset[str],
) -> AsyncGenerator[FormEvent, None]:
    """The events of a multipart/form-data body, in body order.

    Parts named in ``file_fields`` stream as file events; any other part is a text field.
    """
    collector = _Collector(file_fields)
    parser = MultipartParser(_boundary(content_type), collector.callbacks())
    try:
        async with aclosing(chunks):
            async for chunk in chunks:
                if chunk:
                    parser.write(chunk)
                for event in collector.drain():
                    yield event
        parser.finalize()
    except FormParserError as e:
        raise _invalid(f"malformed multipart/form-data: {e}") from e
    for event in collector.drain():
        yield event
    if not collector.ended:
        raise _invalid("the multipart/form-data body ended early")
