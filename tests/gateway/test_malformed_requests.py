"""Oversized and malformed requests get a 4xx with a stable code, and leave nothing behind.

Every endpoint that takes a body is sent what a broken or hostile client sends: JSON that
does not parse, is nested thousands deep, has fields of the wrong type or unknown ones; a
body of another Content-Type; bodies over each limit, announced or chunked; multipart forms
cut short, without a boundary, with too many parts, a field too long or not UTF-8, trailing
garbage; a file over the upload limit that has already gone to S3 in parts. Each answer
must be the documented status with its code in the error body, and the platform's state
must be as before the request: the same documents in every collection of the database,
the same objects in the bucket and no multipart upload left open, the same last sequence
in every JetStream stream (and a transaction being rescheduled unchanged).

The gateway is served by uvicorn over a real socket (``make_server``), so that chunked
bodies and Content-Length reach it as from a client, on the session's real stack.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import httpx
import msgspec
import pytest

from services.gateway.deps import GatewayDeps
from services.gateway.form import MAX_FIELD_BYTES, MAX_PARTS
from services.gateway.records import insert_template, utc_now
from services.gateway.source import tenant_prefix
from shared.documents import S3Location, StatusEntry, Template, Transaction, to_document
from shared.settings import GatewaySettings
from shared.status import TxStatus
from tests.conftest import issue_key
from tests.gateway.conftest import TENANT, ServerFactory, bearer

# The rate limit is not what these tests are about.
_RATE: Final = 10_000.0
# Litestar's default limit of a request body, kept by every JSON endpoint but a submission.
_LITESTAR_MAX_BODY: Final = 10 * 1024 * 1024
_SUBMISSION_MAX_JSON: Final = 64 * 1024
_BOUNDARY: Final = "fuzz-boundary"
_MULTIPART: Final = f"multipart/form-data; boundary={_BOUNDARY}"
_CSV: Final = b"email,first_name\nada@example.com,Ada\n"
_SCHEDULED_TX: Final = "tx-scheduled"
# Within the schedule's limits while the tests run.
_IN_TWO_DAYS: Final = (datetime.now(UTC) + timedelta(days=2)).isoformat()


Send = Callable[["Gateway"], Awaitable[httpx.Response]]


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    """What a request could have left behind."""

    documents: dict[str, int]
    objects: frozenset[str]
    open_uploads: int
    streams: dict[str, int]


async def snapshot(deps: GatewayDeps, settings: GatewaySettings) -> Snapshot:
    db = deps.store.db
    documents = {
        name: await db[name].count_documents({}) for name in await db.list_collection_names()
    }
    objects: set[str] = set()
    paginator = deps.s3.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=settings.s3_bucket):
        objects.update(item["Key"] for item in page.get("Contents", []))
    uploads = await deps.s3.list_multipart_uploads(Bucket=settings.s3_bucket)
    streams = {
        info.config.name or "": info.state.last_seq for info in await deps.broker.js.streams_info()
    }
    return Snapshot(
        documents=documents,
        objects=frozenset(objects),
        open_uploads=len(uploads.get("Uploads", [])),
        streams=streams,
    )


class Gateway:
    """The served gateway, a client of it with the tenant's key, and the state to compare."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        deps: GatewayDeps,
        settings: GatewaySettings,
        admin_key: str,
    ) -> None:
        self.http = http
        self.deps = deps
        self.settings = settings
        self.admin_key = admin_key

    async def refused(self, status: int, code: str, send: Send) -> dict[str, Any]:
        """Send, expect ``status`` with ``code``, and check that nothing changed."""
        before = await snapshot(self.deps, self.settings)
        response = await send(self)
        assert response.status_code == status, response.text
        error: dict[str, Any] = response.json()["error"]
        assert error["code"] == code, error
        assert await snapshot(self.deps, self.settings) == before
        return error


@pytest.fixture
async def template_id(deps: GatewayDeps) -> str:
    """A template of ``TENANT``, inserted as the API would."""
    template = Template(
        id="tpl-fuzz",
        tenant=TENANT,
        name="welcome",
        subject="Hi {{ first_name }}",
        text="Hello",
        placeholders=["first_name"],
        created_at=utc_now(),
    )
    await insert_template(deps.store, template)
    return template.id


@pytest.fixture
async def gateway(
    make_server: ServerFactory,
    deps: GatewayDeps,
    gateway_settings: GatewaySettings,
    api_key: str,
    template_id: str,
) -> AsyncIterator[Gateway]:
    now = datetime.now(UTC)
    scheduled = Transaction(
        id=_SCHEDULED_TX,
        tenant=TENANT,
        status=TxStatus.SCHEDULED,
        template_id=template_id,
        source=S3Location(bucket=gateway_settings.s3_bucket, key="k.csv"),
        send_at=now + timedelta(days=1),
        status_history=[StatusEntry(status=TxStatus.SCHEDULED, at=now)],
        created_at=now,
        updated_at=now,
    )
    await deps.store.transactions.insert_one(to_document(scheduled))
    settings = msgspec.structs.replace(
        gateway_settings,
        api_rate_per_second=_RATE,
        # Small enough to go over quickly, big enough for a file of two 5 MiB parts (S3's
        # smallest) to be in S3 already when the limit is passed.
        max_upload_bytes=11 * 1024 * 1024,
        upload_part_bytes=5 * 1024 * 1024,
    )
    async with (
        make_server(
            api_rate_per_second=settings.api_rate_per_second,
            max_upload_bytes=settings.max_upload_bytes,
            upload_part_bytes=settings.upload_part_bytes,
        ) as base_url,
        httpx.AsyncClient(base_url=base_url, headers=bearer(api_key), timeout=60) as http,
    ):
        yield Gateway(http, deps, settings, await issue_key(deps.store, TENANT, admin=True))


# --- The JSON endpoints -----------------------------------------------------------------

# Each: method, path, a valid body, a body of wrong types. "create key" is sent with an
# admin key.
JSON_ENDPOINTS: Final[dict[str, tuple[str, str, dict[str, Any], dict[str, Any]]]] = {
    "create template": (
        "POST",
        "/api/v1/templates",
        {"name": "n", "subject": "s", "text": "t"},
        {"name": 5, "subject": ["s"], "text": {"t": 1}, "marketing": "yes"},
    ),
    "suppress address": (
        "PUT",
        "/api/v1/suppressions/ada@example.com",
        {"reason": "asked by phone"},
        {"reason": 5},
    ),
    "reschedule": (
        "POST",
        f"/api/v1/transactions/{_SCHEDULED_TX}/reschedule",
        {"send_at": _IN_TWO_DAYS},
        {"send_at": 1893456000},
    ),
    "create key": (
        "POST",
        "/api/v1/admin/keys",
        {"label": "ci"},
        {"admin": "yes", "label": 5},
    ),
    "submit by JSON": (
        "POST",
        "/api/v1/transactions",
        {"template_id": "tpl-fuzz", "source": {"s3_uri": "s3://email-uploads/uploads/acme/x"}},
        {"template_id": 5, "source": "s3://email-uploads/uploads/acme/x"},
    ),
}


def _json_send(
    name: str, content: bytes | Callable[[], AsyncIterator[bytes]], content_type: str | None
) -> Send:
    method, path, _, _ = JSON_ENDPOINTS[name]

    async def send(gateway: Gateway) -> httpx.Response:
        headers = {} if content_type is None else {"content-type": content_type}
        if name == "create key":
            headers.update(bearer(gateway.admin_key))
        body = content() if callable(content) else content
        return await gateway.http.request(method, path, content=body, headers=headers)

    return send


def _encode(body: Any) -> bytes:
    return json.dumps(body).encode()


@pytest.mark.parametrize("name", JSON_ENDPOINTS)
async def test_json_endpoints_refuse_bad_json(gateway: Gateway, name: str) -> None:
    _, _, valid, wrong_types = JSON_ENDPOINTS[name]
    json_type = "application/json"
    # Not JSON: cut short, not UTF-8, not even text.
    for content in (b'{"name": ', b'{"name": "\xff\xfe"}', b"\x00\x01\x02\x89PNG"):
        await gateway.refused(400, "VALIDATION_ERROR", _json_send(name, content, json_type))
    # JSON, but not the object the endpoint takes.
    for body in (wrong_types, {**valid, "unexpected": 1}, [valid], "text", 5):
        await gateway.refused(400, "VALIDATION_ERROR", _json_send(name, _encode(body), json_type))
    # Nested deeper than the decoder goes: a 500 before, from its RecursionError.
    deep = b'{"metadata": ' + b"[" * 50_000 if name == "submit by JSON" else b"[" * 50_000
    await gateway.refused(400, "VALIDATION_ERROR", _json_send(name, deep, json_type))
    deep_objects = b'{"a": ' * 10_000
    await gateway.refused(400, "VALIDATION_ERROR", _json_send(name, deep_objects, json_type))


async def test_json_fields_are_not_converted_to_their_type(gateway: Gateway) -> None:
    """Litestar converts a body leniently: these were taken, as false, true and an admin
    key. A JSON boolean is ``true`` or ``false``."""
    for name, body in (
        ("create template", {"name": "n", "subject": "s", "text": "t", "marketing": 0}),
        ("create template", {"name": "n", "subject": "s", "text": "t", "marketing": "true"}),
        ("create key", {"admin": "true"}),
        ("create key", {"admin": 1}),
    ):
        error = await gateway.refused(
            400, "VALIDATION_ERROR", _json_send(name, _encode(body), "application/json")
        )
        assert "Expected `bool`" in error["message"], error


@pytest.mark.parametrize("name", JSON_ENDPOINTS)
async def test_json_endpoints_refuse_other_content_types(gateway: Gateway, name: str) -> None:
    _, _, valid, _ = JSON_ENDPOINTS[name]
    body = _encode(valid)
    # A valid body under another type was taken before (Litestar decodes any body as JSON).
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "text/csv", None):
        error = await gateway.refused(
            415, "UNSUPPORTED_MEDIA_TYPE", _json_send(name, body, content_type)
        )
        assert error["details"]["content_type"] == (content_type or "")
    # The same body as JSON is taken: answered by the handler (the submission's names no
    # object, and the scheduler never planned the transaction's slots).
    response = await _json_send(name, body, "application/json; charset=utf-8")(gateway)
    refused_later = {"submit by JSON": "SOURCE_NOT_FOUND", "reschedule": "TX_NOT_RESCHEDULABLE"}
    if name in refused_later:
        assert response.json()["error"]["code"] == refused_later[name], response.text
    else:
        assert response.is_success, response.text


@pytest.mark.parametrize("name", JSON_ENDPOINTS)
async def test_json_endpoints_refuse_bodies_over_their_limit(gateway: Gateway, name: str) -> None:
    limit = _SUBMISSION_MAX_JSON if name == "submit by JSON" else _LITESTAR_MAX_BODY
    padding = b"a" * (limit + 1024)
    announced = b'{"name": "' + padding + b'"}'
    await gateway.refused(413, "PAYLOAD_TOO_LARGE", _json_send(name, announced, "application/json"))

    async def chunked() -> AsyncIterator[bytes]:
        # No Content-Length: the limit must hold while the body streams.
        yield b'{"name": "'
        for start in range(0, len(padding), 256 * 1024):
            yield padding[start : start + 256 * 1024]
        yield b'"}'

    await gateway.refused(413, "PAYLOAD_TOO_LARGE", _json_send(name, chunked, "application/json"))


async def test_a_refused_reschedule_leaves_the_transaction_as_it_was(gateway: Gateway) -> None:
    before = await gateway.deps.store.transactions.find_one({"_id": _SCHEDULED_TX})
    json_type = "application/json"
    for content, content_type, status, code in (
        (b'{"send_at": ', json_type, 400, "VALIDATION_ERROR"),
        (b'{"send_at": "2030-01-01T00:00:00Z"}', "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE"),
        (b'{"send_at": "2030-01-01T00:00:00Z", "shift": 1}', json_type, 400, "VALIDATION_ERROR"),
        (b'{"send_at": "not a time"}', json_type, 400, "INVALID_SEND_AT"),
    ):
        await gateway.refused(status, code, _json_send("reschedule", content, content_type))
    assert await gateway.deps.store.transactions.find_one({"_id": _SCHEDULED_TX}) == before


# --- The submission form ----------------------------------------------------------------


def _part(name: str, value: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    return f"--{_BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"


def _form(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{_BOUNDARY}--\r\n".encode()


def _submit(
    content: bytes | Callable[[], AsyncIterator[bytes]],
    content_type: str | None = _MULTIPART,
    *,
    validate_only: bool = False,
) -> Send:
    async def send(gateway: Gateway) -> httpx.Response:
        headers = {} if content_type is None else {"content-type": content_type}
        body = content() if callable(content) else content
        params = {"validate_only": "true"} if validate_only else {}
        return await gateway.http.post(
            "/api/v1/transactions", content=body, headers=headers, params=params
        )

    return send


@pytest.mark.parametrize("validate_only", [False, True], ids=["submit", "validate_only"])
async def test_malformed_forms_are_refused(
    gateway: Gateway, template_id: str, validate_only: bool
) -> None:
    template = _part("template_id", template_id.encode())
    file = _part("file", _CSV, "people.csv")

    async def refused(status: int, code: str, content: bytes, **kw: Any) -> None:
        await gateway.refused(status, code, _submit(content, validate_only=validate_only, **kw))

    whole = _form(template, file)
    # Cut short: inside the file, and before the closing boundary.
    await refused(400, "INVALID_FORM", whole[: len(template) + len(file) // 2])
    await refused(400, "INVALID_FORM", whole[: len(template) + len(file)])
    # Not a form this API reads.
    await refused(400, "INVALID_FORM", whole, content_type="multipart/form-data")
    await refused(415, "UNSUPPORTED_MEDIA_TYPE", _CSV, content_type="text/csv")
    await refused(415, "UNSUPPORTED_MEDIA_TYPE", _CSV, content_type=None)
    await refused(400, "INVALID_FORM", b"--" + _BOUNDARY.encode() + b"\r\n\r\nno headers\r\n")
    nameless = f"--{_BOUNDARY}\r\nContent-Disposition: form-data\r\n\r\nx\r\n".encode()
    await refused(400, "INVALID_FORM", _form(template, nameless))
    await refused(400, "INVALID_FORM", b"garbage before any boundary" + whole)
    # Fields: not UTF-8, too long, too many, unknown, twice.
    await refused(400, "INVALID_FORM", _form(template, _part("callback_url", b"\xff\xfe"), file))
    too_long = _part("metadata", b"x" * (MAX_FIELD_BYTES + 1))
    await refused(400, "INVALID_FORM", _form(template, too_long, file))
    many = [_part("metadata", b"{}") for _ in range(MAX_PARTS)]
    await refused(400, "INVALID_FORM", _form(template, *many, file))
    await refused(400, "VALIDATION_ERROR", _form(template, _part("priority", b"high"), file))
    await refused(400, "VALIDATION_ERROR", _form(template, template, file))
    # Fields of the wrong kind.
    await refused(400, "INVALID_METADATA", _form(template, _part("metadata", b"[1]"), file))
    await refused(400, "INVALID_SEND_AT", _form(template, _part("send_at", b"tomorrow"), file))
    # No file, an empty one, two.
    await refused(400, "MISSING_FILE", _form(template))
    await refused(400, "EMPTY_FILE", _form(template, _part("file", b"", "empty.csv")))
    await refused(400, "VALIDATION_ERROR", _form(template, file, file))


async def test_an_unknown_template_after_the_file_aborts_the_upload(gateway: Gateway) -> None:
    # The file has gone to S3 by the time the field naming the template is read.
    body = _form(_part("file", _CSV, "people.csv"), _part("template_id", b"no-such-template"))
    await gateway.refused(400, "TEMPLATE_NOT_FOUND", _submit(body))


async def test_files_over_the_upload_limit_leave_nothing_in_s3(gateway: Gateway) -> None:
    limit = gateway.settings.max_upload_bytes
    template = _part("template_id", b"tpl-fuzz")
    head = (
        template
        + (
            f'--{_BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
            'filename="big.csv"\r\n\r\n'
        ).encode()
    )
    row = b"someone@example.com,Someone\n"
    rows = b"email,first_name\n" + row * ((limit + 1024 * 1024) // len(row))

    # Announced: refused before a byte is read.
    await gateway.refused(413, "FILE_TOO_LARGE", _submit(head + rows + b"\r\n" + _form()))

    async def chunked() -> AsyncIterator[bytes]:
        # No Content-Length: two 5 MiB parts of a multipart upload are in S3 when the
        # file passes the limit; they must be aborted.
        yield head
        for start in range(0, len(rows), 512 * 1024):
            yield rows[start : start + 512 * 1024]
        yield b"\r\n" + _form()

    await gateway.refused(413, "FILE_TOO_LARGE", _submit(chunked))
    await gateway.refused(413, "FILE_TOO_LARGE", _submit(chunked, validate_only=True))


async def test_bytes_around_the_form_are_bounded_too(gateway: Gateway) -> None:
    """An epilogue after the closing boundary is skipped by the parser and a chunked body
    has no Content-Length: such a body was read to its end, however long, before this."""
    limit = gateway.settings.max_upload_bytes
    whole = _form(_part("template_id", b"tpl-fuzz"), _part("file", _CSV, "people.csv"))

    async def trailing() -> AsyncIterator[bytes]:
        yield whole
        garbage = b"g" * (1024 * 1024)
        for _ in range(limit // len(garbage) + 2):
            yield garbage

    await gateway.refused(413, "FILE_TOO_LARGE", _submit(trailing))
    await gateway.refused(413, "FILE_TOO_LARGE", _submit(trailing, validate_only=True))


# What ingest would refuse the whole file for, decided by its header row (docs/errors.md,
# "File errors"); the template uses ``first_name``.
_BAD_HEADERS: Final = {
    "no email column": (b"name,city\nAnn,Paris\n", "MISSING_EMAIL_COLUMN"),
    "a column twice": (b"email,First Name,first_name\na@example.com,A,B\n", "DUPLICATE_COLUMN"),
    "a nameless column": (b"email,,first_name\na@example.com,,A\n", "EMPTY_COLUMN_NAME"),
    "too many columns": (",".join(["email", *map(str, range(100))]).encode(), "TOO_MANY_COLUMNS"),
    "a placeholder without its column": (b"email\na@example.com\n", "MISSING_PLACEHOLDER_COLUMN"),
    "blank lines only": (b"\n\r\n\n", "EMPTY_FILE"),
    "not text": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "CSV_PARSING_ERROR"),
    "UTF-16": ("email\nada@example.com\n".encode("utf-16"), "CSV_PARSING_ERROR"),
}


@pytest.mark.parametrize("case", _BAD_HEADERS)
async def test_a_file_whose_header_ingest_would_refuse_is_refused_at_once(
    gateway: Gateway, case: str
) -> None:
    """Not 202 and a FAILED transaction later: a 400 with the file error ingest would have
    failed it with, whether the template comes before the file or after it."""
    content, file_error = _BAD_HEADERS[case]
    template = _part("template_id", b"tpl-fuzz")
    file = _part("file", content, "people.csv")
    for body in (_form(template, file), _form(file, template)):
        error = await gateway.refused(400, "INVALID_FILE", _submit(body))
        assert error["details"]["file_error"]["code"] == file_error, error
        assert (error["details"]["field"], error["details"]["row"]) == ("file", 1)


async def test_a_long_file_is_judged_by_its_header_in_its_first_bytes(gateway: Gateway) -> None:
    """The header is checked from the first 64 KiB, kept as the file streams to S3; the cut
    there (mid-row, inside a quoted line break) decides nothing about the rest."""
    rows = b"".join(b'a%d@example.com,"Line one\nline two %d"\n' % (i, i) for i in range(5000))
    assert len(rows) > 3 * 64 * 1024
    template = _part("template_id", b"tpl-fuzz")
    bad = _form(template, _part("file", b"mail,first_name\n" + rows, "big.csv"))
    error = await gateway.refused(400, "INVALID_FILE", _submit(bad))
    assert error["details"]["file_error"]["code"] == "MISSING_EMAIL_COLUMN"
    # The same rows under a good header: accepted, every 64 KiB cut notwithstanding.
    for filler in range(0, 40, 7):
        head = b"email,first_name" + b" " * filler + b"\n"
        good = _form(template, _part("file", head + rows, "big.csv"))
        response = await _submit(good)(gateway)
        assert response.status_code == 202, response.text


async def test_a_file_over_max_rows_is_refused_at_once(
    make_server: ServerFactory,
    deps: GatewayDeps,
    gateway_settings: GatewaySettings,
    api_key: str,
    template_id: str,
) -> None:
    """Not 202 and FAILED later: 400 with ingest's TOO_MANY_ROWS, rows counted as ingest
    counts them (blank lines and quoted line breaks are no rows)."""
    settings = msgspec.structs.replace(gateway_settings, max_rows=3)
    async with (
        make_server(max_rows=3) as base_url,
        httpx.AsyncClient(base_url=base_url, headers=bearer(api_key), timeout=60) as http,
    ):
        gateway = Gateway(http, deps, settings, await issue_key(deps.store, TENANT, admin=True))
        template = _part("template_id", template_id.encode())
        over = b"email,first_name\n" + b"".join(b"a%d@example.com,A\n" % i for i in range(4))
        body = _form(template, _part("file", over, "people.csv"))
        error = await gateway.refused(400, "INVALID_FILE", _submit(body))
        assert error["details"]["file_error"]["code"] == "TOO_MANY_ROWS"
        assert error["details"]["file_error"]["details"]["max_rows"] == 3
        # The header is row 1: the fourth data row is row 5.
        assert (error["details"]["field"], error["details"]["row"]) == ("file", 5)
        # Eight line breaks, three rows: a quoted line break, blank lines, a row of empty
        # cells.
        within = b'email,first_name\n\na1@example.com,"A\nB"\n\na2@example.com,A\n,\na3@x.com,A\n'
        assert within.count(b"\n") == 8
        response = await _submit(_form(template, _part("file", within, "people.csv")))(gateway)
        assert response.status_code == 202, response.text


async def test_a_source_whose_header_ingest_would_refuse_is_refused_at_once(
    gateway: Gateway,
) -> None:
    key = f"{tenant_prefix(TENANT)}no-email.csv"
    await gateway.deps.s3.put_object(
        Bucket=gateway.settings.s3_bucket, Key=key, Body=b"name,first_name\nAnn,A\n" * 10
    )
    body = {
        "template_id": "tpl-fuzz",
        "source": {"s3_uri": f"s3://{gateway.settings.s3_bucket}/{key}"},
    }
    error = await gateway.refused(
        400, "INVALID_FILE", _json_send("submit by JSON", _encode(body), "application/json")
    )
    assert error["details"]["file_error"]["code"] == "MISSING_EMAIL_COLUMN"
    assert error["details"]["field"] == "source.s3_uri"


async def test_binary_files_are_reported_not_stored_with_validate_only(
    gateway: Gateway,
) -> None:
    """A file that is not UTF-8 CSV is ingest's to refuse (a file error: the transaction
    FAILED, see docs/errors.md); checked first, it is reported and nothing is kept."""
    template = _part("template_id", b"tpl-fuzz")
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
    for content in (png, "email\nada@example.com\n".encode("utf-16")):
        before = await snapshot(gateway.deps, gateway.settings)
        form = _form(template, _part("file", content, "x.csv"))
        response = await _submit(form, validate_only=True)(gateway)
        assert response.status_code == 200, response.text
        assert response.json()["file_error"]["code"] == "CSV_PARSING_ERROR"
        assert await snapshot(gateway.deps, gateway.settings) == before


# --- The SNS webhook ---------------------------------------------------------------------


def _sns(content: bytes) -> Send:
    async def send(gateway: Gateway) -> httpx.Response:
        return await gateway.http.post(
            "/api/v1/webhooks/ses", content=content, headers={"content-type": "text/plain"}
        )

    return send


async def test_the_sns_webhook_refuses_malformed_and_oversized_bodies(gateway: Gateway) -> None:
    for content in (b"", b'{"Type": ', b"\xff\xfe", b"[" * 50_000, b'{"Type": "Other"}'):
        await gateway.refused(400, "SNS_MESSAGE_INVALID", _sns(content))
    await gateway.refused(413, "PAYLOAD_TOO_LARGE", _sns(b" " * (1024 * 1024 + 1)))
