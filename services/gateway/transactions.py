"""``/api/v1/transactions``: submit a campaign, list and read transactions, errors, progress.

A submission streams its CSV into S3 while the form arrives (see ``form`` and ``upload``),
then records the transaction in ACCEPT and announces it: the status event on
``email.tx.status.ACCEPT`` and ``TxAccepted`` on ``email.tx.accepted`` for ingest. Both
publishes carry business-key message ids, so a later re-publish of a stuck ACCEPT is
deduplicated by the server.

A JSON body names a file already in the bucket instead (``source``); an
``Idempotency-Key`` makes a retried submission answer with the first one's transaction
(see ``idempotency``). Either way a file whose header row ingest would refuse is refused
at once, 400 ``INVALID_FILE`` (``report.header_problem``: the form's file from its first
64 KiB, kept as it streams; a source from the object's start), and nothing is kept.

With ``?validate_only=true`` the file goes through ingest's checks instead (``report``), as
it arrives -- the form's file straight from the request, never stored; a JSON source read
from S3 -- and the answer is the report: nothing is recorded, published or uploaded, and an
``Idempotency-Key`` is ignored.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final

import msgspec
import structlog
from litestar import Controller, Request, Response, get, post
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
)
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter
from litestar.response import Stream
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED

from services.gateway import idempotency
from services.gateway.control import request_cancel, request_reschedule
from services.gateway.cursor import (
    RowPosition,
    decode_cursor,
    encode_cursor,
    newest_after,
    newest_cursor,
)
from services.gateway.deps import Deps, GatewayDeps, Settings
from services.gateway.errors import ApiError, Code, error_responses
from services.gateway.exports import row_errors_csv
from services.gateway.form import (
    FieldRead,
    FileData,
    FileEnded,
    FileStarted,
    FormEvent,
    read_form,
)
from services.gateway.metadata import (
    MAX_KEY_CHARS,
    MAX_KEYS,
    MAX_VALUE_CHARS,
    check_metadata,
    parse_metadata,
)
from services.gateway.operator_actions import ActionKind, record_action
from services.gateway.records import (
    find_template,
    find_transaction,
    insert_new_transaction,
    insert_transaction,
    mark_retried,
    page_messages,
    page_row_errors,
    page_transactions,
    utc_now,
)
from services.gateway.report import (
    FileProblem,
    ValidationReport,
    check_file,
    header_problem,
    rows_problem,
)
from services.gateway.retry import (
    RETRY_OF,
    check_retryable,
    retry_id,
    retry_metadata,
    write_retry_file,
)
from services.gateway.source import find_source, read_source, tenant_prefix
from services.gateway.tenant import Caller, Tenant, own_transaction
from services.gateway.upload import S3Upload
from services.gateway.views import (
    MessagePage,
    RowErrorPage,
    TransactionAccepted,
    TransactionPage,
    TransactionView,
    message_item,
    row_error_item,
    transaction_summary,
    transaction_view,
)
from shared.broker import Broker
from shared.clock import to_stored
from shared.documents import (
    S3Location,
    StatusEntry,
    Template,
    Transaction,
    from_document,
    message_id,
    to_document,
)
from shared.errors import BrokerUnavailable, StoreUnavailable
from shared.events import TxAccepted
from shared.log import get_logger
from shared.progress import TransactionProgress, compute_progress
from shared.safe_http import AddressNotAllowed, check_callback_url, parse_networks
from shared.schedule import MAX_PAST, SendAtProblem, check_send_at
from shared.settings import GatewaySettings
from shared.status import MessageStatus, TxStatus
from shared.topology import Subjects
from shared.transitions import publish_status

__all__ = ["RescheduleInput", "TransactionController", "upload_key"]

log = get_logger("gateway.transactions")

FILE_FIELD: Final = "file"
_TEXT_FIELDS: Final = frozenset({"template_id", "callback_url", "send_at", "metadata"})
# Room for the form's text fields, part headers and boundaries around the file.
_FORM_OVERHEAD: Final = 64 * 1024
# How much of an uploaded file is kept to check its header row at once; a longer header
# (100 columns of ~650 characters) is left to ingest.
_HEAD_BYTES: Final = 64 * 1024
# A JSON submission carries no file: its fields, metadata at most ~30 KiB of them.
_MAX_JSON_BYTES: Final = 64 * 1024
_JSON: Final = "application/json"
_MULTIPART: Final = "multipart/form-data"
_MAX_URL_CHARS: Final = 2048
_DEFAULT_LIMIT: Final = 50
_MAX_LIMIT: Final = 200

PageLimit = Annotated[int, QueryParameter(ge=1, le=_MAX_LIMIT, description="Page size.")]
Cursor = Annotated[
    str | None,
    QueryParameter(description="`next_cursor` of the previous page.", max_length=512),
]
StatusFilter = Annotated[TxStatus | None, QueryParameter(description="Only this status.")]
MessageStatusFilter = Annotated[
    MessageStatus | None, QueryParameter(description="Only the messages in this status.")
]
ErrorCodeFilter = Annotated[
    str | None,
    QueryParameter(
        description="Only row errors of this code, e.g. `INVALID_EMAIL`.",
        max_length=64,
        pattern=r"^[A-Z_]+$",
    ),
]
ValidateOnly = Annotated[
    bool,
    QueryParameter(
        description=(
            "Only check the file, as ingest would, and answer 200 with the report: no "
            "transaction is created, nothing is queued and nothing is stored (a form's file "
            "is read as it arrives, never uploaded). The form's `template_id` field must "
            "come before its `file`. An `Idempotency-Key` is ignored."
        ),
    ),
]
IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name=idempotency.HEADER,
        required=False,
        description=(
            "1-255 printable ASCII characters, unique per request you mean to make once. "
            "Repeating a submission with the same key and the same request (fields and file "
            "content, or JSON body and source object) answers 200 with the first answer's "
            "body and creates nothing; the same key with a different request is 409 "
            "`IDEMPOTENCY_KEY_REUSED`; while the first is still being processed, 409 "
            "`IDEMPOTENCY_KEY_IN_USE`. Keys are kept 24 hours, per tenant. Ignored with "
            "`validate_only=true`."
        ),
    ),
]


def upload_key(tenant: str, transaction_id: str) -> str:
    return f"{tenant_prefix(tenant)}{transaction_id}.csv"


class _Submission(msgspec.Struct, frozen=True, kw_only=True):
    """The fields of a submission, checked."""

    template_id: str
    callback_url: str | None
    send_at: datetime | None
    metadata: dict[str, str]


class _SourceInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    s3_uri: str


class _ScheduleInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # Text, checked by ``_check_send_at`` like the form's field (INVALID_SEND_AT).
    send_at: str


class RescheduleInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of ``POST /transactions/{id}/reschedule``."""

    send_at: Annotated[
        str,
        msgspec.Meta(
            description=("RFC 3339 with a UTC offset: when the transaction's first slot now fires.")
        ),
    ]


class _SubmissionInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The JSON body of a submission whose file is already in the bucket."""

    template_id: str
    source: _SourceInput
    callback_url: str | None = None
    schedule: _ScheduleInput | None = None
    # Any JSON, checked by ``check_metadata`` so that its errors say INVALID_METADATA.
    metadata: Any = None


_SUBMISSION_INPUT: Final = msgspec.json.Decoder(_SubmissionInput)


class _SameRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What an Idempotency-Key's fingerprint covers: two submissions are the same request
    when all of this is equal."""

    submission: _Submission
    filename: str | None
    # The form's file: "sha256:<hex>"; a JSON source: "s3://<bucket>/<key>#<ETag>".
    content: str


@dataclass(frozen=True, kw_only=True, slots=True)
class _Intake:
    """A submission received, either way: its checked fields and its file, in S3."""

    submission: _Submission
    source: S3Location
    filename: str | None
    size: int
    content: str
    # Our own upload (the form's file), deleted if the submission turns out a duplicate.
    upload: S3Upload | None

    def fingerprint(self) -> str:
        return idempotency.fingerprint(
            _SameRequest(submission=self.submission, filename=self.filename, content=self.content)
        )

    async def discard(self) -> None:
        if self.upload is not None:
            await self.upload.discard()


@dataclass
class _SubmissionOperation(Operation):
    """Documents the multipart body the handler reads as a stream (Litestar cannot see it)."""

    def __post_init__(self) -> None:
        text = Schema(type=OpenAPIType.STRING)
        callback_url = Schema(
            type=OpenAPIType.STRING,
            format=OpenAPIFormat.URI,
            description=(
                "http or https URL for status callbacks, without user information; a host "
                "given as an IP address must be a public one."
            ),
        )
        send_at = Schema(
            type=OpenAPIType.STRING,
            format=OpenAPIFormat.DATE_TIME,
            description=(
                "RFC 3339 with a UTC offset; absent = now. At most `max_schedule_days` (30) "
                "days ahead and 5 minutes back (which means now). Rows may have their own: a "
                "`send_at` column, RFC 3339 with an offset or a local date-time with the row's "
                "IANA zone in a `timezone` column."
            ),
        )
        metadata_rules = (
            f"at most {MAX_KEYS} keys of 1-{MAX_KEY_CHARS} characters (no '.', no leading "
            f"'$') to string values of up to {MAX_VALUE_CHARS} characters; stored with the "
            "transaction and echoed back"
        )
        self.request_body = RequestBody(
            required=True,
            content={
                _JSON: OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.OBJECT,
                        required=["template_id", "source"],
                        properties={
                            "template_id": text,
                            "source": Schema(
                                type=OpenAPIType.OBJECT,
                                required=["s3_uri"],
                                properties={
                                    "s3_uri": Schema(
                                        type=OpenAPIType.STRING,
                                        description=(
                                            "A CSV already in the platform's bucket, under "
                                            "the tenant's prefix: "
                                            "`s3://<bucket>/uploads/<tenant>/<key>`."
                                        ),
                                    )
                                },
                                additional_properties=False,
                            ),
                            "callback_url": callback_url,
                            "schedule": Schema(
                                type=OpenAPIType.OBJECT,
                                required=["send_at"],
                                properties={"send_at": send_at},
                                additional_properties=False,
                            ),
                            "metadata": Schema(
                                type=OpenAPIType.OBJECT,
                                max_properties=MAX_KEYS,
                                additional_properties=Schema(
                                    type=OpenAPIType.STRING, max_length=MAX_VALUE_CHARS
                                ),
                                description=f"Free key/values: {metadata_rules}.",
                            ),
                        },
                        additional_properties=False,
                    )
                ),
                _MULTIPART: OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.OBJECT,
                        required=[FILE_FIELD, "template_id"],
                        properties={
                            FILE_FIELD: Schema(
                                type=OpenAPIType.STRING,
                                format=OpenAPIFormat.BINARY,
                                description="The recipients: a CSV file with a header row.",
                            ),
                            "template_id": text,
                            "callback_url": callback_url,
                            "send_at": send_at,
                            "metadata": Schema(
                                type=OpenAPIType.STRING,
                                description=f"A JSON object of free key/values: {metadata_rules}.",
                            ),
                        },
                        additional_properties=False,
                    )
                ),
            },
        )


def _field_error(field: str, message: str) -> ApiError:
    return ApiError(Code.VALIDATION_ERROR, message, details={"field": field})


def _check_callback_url(value: str, settings: GatewaySettings) -> str:
    """An http(s) URL we may call back, as far as can be told before calling it: a host
    that is an IP address must be a public one (shared/safe_http.py); a name is checked by
    the tracker at each connection, since what it resolves to can change."""
    url = value.strip()
    details = {"field": "callback_url", "value": value[:_MAX_URL_CHARS]}
    try:
        if len(url) > _MAX_URL_CHARS:
            raise ValueError(f"longer than {_MAX_URL_CHARS} characters")
        return check_callback_url(url, parse_networks(settings.callback_allowed_networks))
    except AddressNotAllowed as e:
        raise ApiError(
            Code.CALLBACK_URL_NOT_ALLOWED, f"callback_url is not allowed: {e}", details=details
        ) from e
    except ValueError as e:
        raise ApiError(
            Code.INVALID_CALLBACK_URL,
            f"callback_url must be an absolute http or https URL: {e}",
            details=details,
        ) from e


def _check_send_at(value: str, max_days: int) -> datetime:
    """A send time within ``shared.schedule``'s limits: at most ``max_days`` ahead, at most
    ``MAX_PAST`` back (which means now)."""
    try:
        at = msgspec.convert(value.strip(), datetime)
    except msgspec.ValidationError:
        at = None
    if at is None or at.tzinfo is None:
        raise ApiError(
            Code.INVALID_SEND_AT,
            "send_at must be an RFC 3339 date-time with a UTC offset, "
            "e.g. 2030-01-31T09:00:00+01:00",
            details={"field": "send_at", "value": value},
        )
    at = at.astimezone(UTC)
    match check_send_at(at, datetime.now(UTC), max_days):
        case SendAtProblem.IN_PAST:
            raise ApiError(
                Code.SEND_AT_IN_PAST,
                f"send_at is more than {MAX_PAST.seconds // 60} minutes in the past",
                details={"field": "send_at", "value": value},
            )
        case SendAtProblem.TOO_FAR:
            raise ApiError(
                Code.SEND_AT_TOO_FAR,
                f"send_at is more than {max_days} days ahead",
                details={"field": "send_at", "value": value, "max_schedule_days": max_days},
            )
    return to_stored(at)


def _check_fields(fields: dict[str, str], settings: GatewaySettings) -> _Submission:
    template_id = fields.get("template_id", "").strip()
    if not template_id:
        raise _field_error("template_id", "template_id is required")
    callback_url = fields.get("callback_url", "").strip()
    send_at = fields.get("send_at", "").strip()
    metadata = fields.get("metadata", "").strip()
    return _Submission(
        template_id=template_id,
        callback_url=_check_callback_url(callback_url, settings) if callback_url else None,
        send_at=_check_send_at(send_at, settings.max_schedule_days) if send_at else None,
        metadata=parse_metadata(metadata) if metadata else {},
    )


def _check_input(body: _SubmissionInput, settings: GatewaySettings) -> _Submission:
    template_id = body.template_id.strip()
    if not template_id:
        raise _field_error("template_id", "template_id is required")
    callback_url = (body.callback_url or "").strip()
    return _Submission(
        template_id=template_id,
        callback_url=_check_callback_url(callback_url, settings) if callback_url else None,
        send_at=(
            None
            if body.schedule is None
            else _check_send_at(body.schedule.send_at, settings.max_schedule_days)
        ),
        metadata={} if body.metadata is None else check_metadata(body.metadata),
    )


async def _require_template(deps: GatewayDeps, tenant: str, template_id: str) -> Template:
    template = await find_template(deps.store, tenant, template_id)
    if template is None:
        raise ApiError(
            Code.TEMPLATE_NOT_FOUND,
            f"no template {template_id!r}",
            details={"field": "template_id", "value": template_id},
        )
    return template


class _Receiver:
    """One submission's body: text fields gathered, the file streamed into S3."""

    def __init__(
        self, deps: GatewayDeps, settings: GatewaySettings, tenant: str, transaction_id: str
    ) -> None:
        self.deps = deps
        self.settings = settings
        self.tenant = tenant
        self.fields: dict[str, str] = {}
        self.upload = S3Upload(
            deps.s3,
            settings.s3_bucket,
            upload_key(tenant, transaction_id),
            settings.upload_part_bytes,
        )
        self.filename: str | None = None
        self.file_seen = False
        self.template: Template | None = None
        self.head = bytearray()
        self.line_breaks = 0

    async def receive(self, request: Request[Any, Any, Any]) -> _Submission:
        """Read the body and complete the upload, or abort it and raise."""
        try:
            submission = await self._read(request)
            await self.upload.complete()
        except BaseException:
            await self.upload.abort()
            raise
        try:
            await self._check_rows()
        except BaseException:
            await self.upload.discard()
            raise
        return submission

    async def _read(self, request: Request[Any, Any, Any]) -> _Submission:
        events = _form_events(request, self.settings)
        async with aclosing(events):
            async for event in events:
                match event:
                    case FieldRead(name=name, value=value):
                        _add_field(self.fields, name, value)
                    case FileStarted(filename=filename):
                        if self.file_seen:
                            raise _field_error(FILE_FIELD, "only one file per submission")
                        self.file_seen = True
                        self.filename = filename
                        # Fail before the upload when the fields came first.
                        if "template_id" in self.fields:
                            await self._find_template(_check_fields(self.fields, self.settings))
                    case FileData(data=data):
                        if self.upload.size + len(data) > self.settings.max_upload_bytes:
                            raise _too_large(self.settings.max_upload_bytes)
                        await self.upload.write(data)
                        self.head += data[: _HEAD_BYTES - len(self.head)]
                        self.line_breaks += data.count(b"\n")
                    case FileEnded():
                        pass
        if not self.file_seen:
            raise _missing_file()
        if self.upload.size == 0:
            raise _empty_file()
        submission = _check_fields(self.fields, self.settings)
        await self._find_template(submission)
        await self._check_header()
        return submission

    async def _check_header(self) -> None:
        assert self.template is not None
        complete = self.upload.size == len(self.head)
        # Cut after the last line break: what the parser reads from it ends there.
        head = self.head if complete else self.head[: self.head.rfind(b"\n") + 1]
        problem = await header_problem(
            _one_chunk(bytes(head)), self.template.placeholders, self.settings, complete=complete
        )
        if problem is not None:
            raise _invalid_file(problem, FILE_FIELD)

    async def _check_rows(self) -> None:
        """Refuse a file over ``max_rows`` now, rather than ingest failing it later.

        Every record but the file's last ends at a line break, so a file of no more line
        breaks than ``max_rows`` has no more data rows; only a longer one is read back from
        S3 and counted as ingest counts (quoted line breaks and blank lines are no rows).
        """
        if self.line_breaks <= self.settings.max_rows:
            return
        location = S3Location(bucket=self.upload.bucket, key=self.upload.key)
        chunks = read_source(self.deps.s3, location)
        async with aclosing(chunks):
            problem = await rows_problem(chunks, self.settings)
        if problem is not None:
            raise _invalid_file(problem, FILE_FIELD)

    async def _find_template(self, submission: _Submission) -> None:
        if self.template is None:
            self.template = await _require_template(self.deps, self.tenant, submission.template_id)


def _add_field(fields: dict[str, str], name: str, value: str) -> None:
    if name not in _TEXT_FIELDS:
        raise _field_error(name, f"unknown form field {name!r}")
    if name in fields:
        raise _field_error(name, f"form field {name!r} given twice")
    fields[name] = value


class _FormCheck:
    """A ``validate_only`` form: text fields gathered, the file fed to ``check_file`` as it
    arrives, nothing stored."""

    def __init__(self, deps: GatewayDeps, settings: GatewaySettings, tenant: str) -> None:
        self.deps = deps
        self.settings = settings
        self.tenant = tenant
        self.fields: dict[str, str] = {}
        self.size = 0
        self.report: ValidationReport | None = None

    async def check(self, request: Request[Any, Any, Any]) -> ValidationReport:
        events = _form_events(request, self.settings)
        async with aclosing(events):
            async for event in events:
                match event:
                    case FieldRead(name=name, value=value):
                        _add_field(self.fields, name, value)
                    case FileStarted():
                        if self.report is not None:
                            raise _field_error(FILE_FIELD, "only one file per submission")
                        self.report = await self._check_file(events)
                    case FileData(data=data):
                        # The rest of a file ``check_file`` stopped reading.
                        self._count(data)
                    case FileEnded():
                        pass
        if self.report is None:
            raise _missing_file()
        if self.size == 0:
            raise _empty_file()
        # The fields after the file are checked as a submission's would be.
        _check_fields(self.fields, self.settings)
        return self.report

    async def _check_file(self, events: AsyncGenerator[FormEvent, None]) -> ValidationReport:
        if "template_id" not in self.fields:
            raise _field_error(
                "template_id", "with validate_only, the template_id field must come before the file"
            )
        submission = _check_fields(self.fields, self.settings)
        template = await _require_template(self.deps, self.tenant, submission.template_id)
        chunks = self._file_chunks(events)
        async with aclosing(chunks):
            return await check_file(chunks, template.placeholders, self.settings)

    async def _file_chunks(
        self, events: AsyncGenerator[FormEvent, None]
    ) -> AsyncGenerator[bytes, None]:
        """The file's bytes: the form's events up to the end of the file part."""
        async for event in events:
            match event:
                case FileData(data=data):
                    self._count(data)
                    yield data
                case _:
                    # FileEnded: a part never starts inside another.
                    return

    def _count(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.settings.max_upload_bytes:
            raise _too_large(self.settings.max_upload_bytes)


def _media_type(request: Request[Any, Any, Any]) -> str:
    content_type = request.headers.get("content-type") or ""
    media_type = content_type.partition(";")[0].strip().lower()
    if media_type not in {_JSON, _MULTIPART}:
        raise ApiError(
            Code.UNSUPPORTED_MEDIA_TYPE,
            f"the body must be {_MULTIPART} or {_JSON}",
            details={"content_type": content_type},
        )
    return media_type


def _form_events(
    request: Request[Any, Any, Any], settings: GatewaySettings
) -> AsyncGenerator[FormEvent, None]:
    """A multipart submission's parts as they stream in; only ``file`` is a file."""
    return read_form(
        _bounded(request.stream(), settings.max_upload_bytes),
        request.headers.get("content-type"),
        file_fields=frozenset({FILE_FIELD}),
    )


async def _bounded(
    chunks: AsyncGenerator[bytes, None], max_file_bytes: int
) -> AsyncGenerator[bytes, None]:
    """The body's chunks, refused past the file limit plus the form's overhead.

    The Content-Length check does not see a chunked body, and the file's own count does not
    see bytes outside the file: a preamble, or an epilogue after the closing boundary that
    the parser skips. Without this, such a body would be read to its end, however long."""
    total = 0
    async with aclosing(chunks):
        async for chunk in chunks:
            total += len(chunk)
            if total > max_file_bytes + _FORM_OVERHEAD:
                raise _too_large(max_file_bytes)
            yield chunk


def _missing_file() -> ApiError:
    return ApiError(
        Code.MISSING_FILE, "the form has no 'file' field", details={"field": FILE_FIELD}
    )


def _empty_file() -> ApiError:
    return ApiError(Code.EMPTY_FILE, "the file is empty", details={"field": FILE_FIELD})


def _invalid_file(problem: FileProblem, field: str) -> ApiError:
    return ApiError(
        Code.INVALID_FILE,
        problem.message,
        details={
            "field": field,
            # The header's row, or the row the problem is at (TOO_MANY_ROWS).
            "row": problem.details.get("row", 1),
            "file_error": msgspec.to_builtins(problem),
        },
    )


async def _one_chunk(data: bytes) -> AsyncGenerator[bytes, None]:
    yield data


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(
        Code.FILE_TOO_LARGE,
        f"the file is larger than {max_bytes} bytes",
        details={"max_bytes": max_bytes},
    )


async def _receive_form(
    request: Request[Any, Any, Any],
    deps: GatewayDeps,
    settings: GatewaySettings,
    tenant: str,
    transaction_id: str,
) -> _Intake:
    announced = request.content_length
    if announced is not None and announced > settings.max_upload_bytes + _FORM_OVERHEAD:
        raise _too_large(settings.max_upload_bytes)
    receiver = _Receiver(deps, settings, tenant, transaction_id)
    submission = await receiver.receive(request)
    upload = receiver.upload
    return _Intake(
        submission=submission,
        source=S3Location(bucket=upload.bucket, key=upload.key),
        filename=receiver.filename,
        size=upload.size,
        content=f"sha256:{upload.sha256}",
        upload=upload,
    )


async def _read_json(request: Request[Any, Any, Any]) -> _SubmissionInput:
    too_large = ApiError(
        Code.PAYLOAD_TOO_LARGE,
        f"a JSON submission is at most {_MAX_JSON_BYTES} bytes",
        details={"max_bytes": _MAX_JSON_BYTES},
    )
    announced = request.content_length
    if announced is not None and announced > _MAX_JSON_BYTES:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_JSON_BYTES:
            raise too_large
    try:
        return _SUBMISSION_INPUT.decode(body)
    except msgspec.ValidationError as e:
        raise ApiError(Code.VALIDATION_ERROR, f"invalid submission: {e}") from e
    except msgspec.DecodeError as e:
        raise ApiError(Code.VALIDATION_ERROR, f"malformed JSON: {e}") from e


async def _check_form(
    request: Request[Any, Any, Any], deps: GatewayDeps, settings: GatewaySettings, tenant: str
) -> ValidationReport:
    announced = request.content_length
    if announced is not None and announced > settings.max_upload_bytes + _FORM_OVERHEAD:
        raise _too_large(settings.max_upload_bytes)
    return await _FormCheck(deps, settings, tenant).check(request)


async def _check_json(
    request: Request[Any, Any, Any], deps: GatewayDeps, settings: GatewaySettings, tenant: str
) -> ValidationReport:
    body = await _read_json(request)
    submission = _check_input(body, settings)
    template = await _require_template(deps, tenant, submission.template_id)
    found = await find_source(
        deps.s3,
        body.source.s3_uri,
        bucket=settings.s3_bucket,
        tenant=tenant,
        max_bytes=settings.max_upload_bytes,
    )
    chunks = read_source(deps.s3, found.location)
    async with aclosing(chunks):
        return await check_file(chunks, template.placeholders, settings)


async def _receive_json(
    request: Request[Any, Any, Any], deps: GatewayDeps, settings: GatewaySettings, tenant: str
) -> _Intake:
    body = await _read_json(request)
    submission = _check_input(body, settings)
    template = await _require_template(deps, tenant, submission.template_id)
    found = await find_source(
        deps.s3,
        body.source.s3_uri,
        bucket=settings.s3_bucket,
        tenant=tenant,
        max_bytes=settings.max_upload_bytes,
    )
    location = found.location
    # Read no further than the header row.
    chunks = read_source(deps.s3, location)
    async with aclosing(chunks):
        problem = await header_problem(chunks, template.placeholders, settings)
    if problem is not None:
        raise _invalid_file(problem, "source.s3_uri")
    return _Intake(
        submission=submission,
        source=location,
        filename=location.key.rpartition("/")[2],
        size=found.size,
        content=f"s3://{location.bucket}/{location.key}#{found.etag}",
        upload=None,
    )


async def _replay(
    deps: GatewayDeps,
    settings: GatewaySettings,
    tenant: str,
    key: str,
    intake: _Intake,
    accepted: TransactionAccepted,
) -> TransactionAccepted | None:
    """Claim the Idempotency-Key for ``accepted``: None when it is ours, else the answer of
    the submission this one repeats. Either way but ours, our upload is thrown away."""
    try:
        held = await idempotency.claim(
            deps.store,
            tenant,
            key,
            fingerprint=intake.fingerprint(),
            transaction_id=accepted.transaction_id,
            response=to_document(accepted),
            wait_seconds=settings.idempotency_wait_seconds,
        )
    except BaseException:
        await intake.discard()
        raise
    if held is None:
        return None
    await intake.discard()
    tx = await find_transaction(deps.store, tenant, held.transaction_id)
    if tx is not None and tx.status == TxStatus.ACCEPT:
        # The first request may have answered 503 before ingest heard of it: announce again
        # (the message ids make this a no-op when it had been announced).
        await _announce(deps.broker, tx, tx.status_history[0])
    log.info("submission replayed", replay_of=held.transaction_id)
    return from_document(held.response, TransactionAccepted)


async def _record(deps: GatewayDeps, tenant: str, key: str | None, tx: Transaction) -> None:
    """Insert and announce the transaction, and settle its Idempotency-Key if it has one."""
    try:
        await insert_transaction(deps.store, tx)
    except BaseException:
        if key is not None:
            try:
                await idempotency.release(deps.store, tenant, key, tx.id)
            except StoreUnavailable as e:
                # ``idempotency.claim`` frees an abandoned claim after a while.
                log.warning("idempotency key not released", error=str(e))
        raise
    try:
        await _announce(deps.broker, tx, tx.status_history[0])
    finally:
        # Recorded: a retry with the key must find this transaction, announced or not.
        if key is not None:
            await idempotency.complete(deps.store, tenant, key, tx.id)


async def _announce(broker: Broker, tx: Transaction, entry: StatusEntry) -> None:
    try:
        await publish_status(broker, tx.id, tx.tenant, None, entry)
        await broker.publish(
            Subjects.TX_ACCEPTED,
            TxAccepted(transaction_id=tx.id),
            msg_id=f"{tx.id}:accepted",
        )
    except BrokerUnavailable as e:
        log.warning("transaction recorded but not announced", error=str(e))
        raise ApiError(
            Code.SERVICE_UNAVAILABLE,
            "the transaction was recorded but could not be queued; it stays in ACCEPT",
            details={"transaction_id": tx.id},
        ) from e


class TransactionController(Controller):
    path = "/transactions"
    tags = ["transactions"]  # noqa: RUF012 -- Litestar's declared attribute type is a list

    @post(
        status_code=HTTP_202_ACCEPTED,
        summary="Submit a campaign",
        description=(
            "multipart/form-data with `file` (CSV), `template_id`, optional `callback_url`, "
            "`send_at` and `metadata` (a JSON object); the file streams to S3. Or JSON naming "
            "a file already in the bucket: `template_id`, `source.s3_uri`, optional "
            "`callback_url`, `schedule.send_at` and `metadata`. Processing continues "
            "asynchronously. With an `Idempotency-Key`, a repeated submission answers 200 "
            "with the first one's body. With `validate_only=true`, either kind answers 200 "
            "with a validation report instead, and creates nothing."
        ),
        # The form is read as a stream; its limits are enforced while reading.
        request_max_body_size=None,
        operation_class=_SubmissionOperation,
        responses={
            HTTP_200_OK: ResponseSpec(
                # Litestar documents a union as oneOf; its annotation asks for one type.
                data_container=TransactionAccepted | ValidationReport,  # type: ignore[arg-type]
                description=(
                    "With `validate_only=true`: the `ValidationReport` of the file, nothing "
                    "created. Otherwise a repeat of an earlier submission with the same "
                    "Idempotency-Key: its transaction, with the body the first answer had"
                ),
                generate_examples=False,
            ),
            **error_responses(
                Code.VALIDATION_ERROR,
                Code.INVALID_FORM,
                Code.MISSING_FILE,
                Code.EMPTY_FILE,
                Code.INVALID_FILE,
                Code.TEMPLATE_NOT_FOUND,
                Code.INVALID_CALLBACK_URL,
                Code.CALLBACK_URL_NOT_ALLOWED,
                Code.INVALID_SEND_AT,
                Code.INVALID_METADATA,
                Code.SOURCE_NOT_FOUND,
                Code.SOURCE_NOT_ALLOWED,
                Code.INVALID_IDEMPOTENCY_KEY,
                Code.IDEMPOTENCY_KEY_REUSED,
                Code.IDEMPOTENCY_KEY_IN_USE,
                Code.FILE_TOO_LARGE,
                Code.PAYLOAD_TOO_LARGE,
                Code.UNSUPPORTED_MEDIA_TYPE,
            ),
        },
    )
    async def submit_transaction(
        self,
        request: Request[Any, Any, Any],
        deps: Deps,
        settings: Settings,
        tenant: Tenant,
        caller: Caller,
        idempotency_key: IdempotencyKey = None,
        validate_only: ValidateOnly = False,
    ) -> Response[TransactionAccepted | ValidationReport]:
        if validate_only:
            return Response(
                await _validate(request, deps, settings, tenant), status_code=HTTP_200_OK
            )
        key = idempotency.check_key(idempotency_key)
        transaction_id = uuid.uuid4().hex
        with structlog.contextvars.bound_contextvars(transaction_id=transaction_id):
            if _media_type(request) == _JSON:
                intake = await _receive_json(request, deps, settings, tenant)
            else:
                intake = await _receive_form(request, deps, settings, tenant, transaction_id)
            submission = intake.submission
            now = utc_now()
            accepted = TransactionAccepted(
                transaction_id=transaction_id,
                status=TxStatus.ACCEPT,
                template_id=submission.template_id,
                callback_url=submission.callback_url,
                send_at=submission.send_at,
                metadata=submission.metadata,
                filename=intake.filename,
                size_bytes=intake.size,
                created_at=now,
            )
            if key is not None:
                replayed = await _replay(deps, settings, tenant, key, intake, accepted)
                if replayed is not None:
                    return Response(replayed, status_code=HTTP_200_OK)
            tx = Transaction(
                id=transaction_id,
                tenant=tenant,
                status=TxStatus.ACCEPT,
                template_id=submission.template_id,
                source=intake.source,
                filename=intake.filename,
                callback_url=submission.callback_url,
                send_at=submission.send_at,
                metadata=submission.metadata,
                status_history=[StatusEntry(status=TxStatus.ACCEPT, at=now)],
                mode=caller.mode,
                created_at=now,
                updated_at=now,
            )
            await _record(deps, tenant, key, tx)
            log.info(
                "transaction accepted",
                template_id=tx.template_id,
                bytes=intake.size,
                parts=0 if intake.upload is None else intake.upload.parts,
                source="upload" if intake.upload is not None else "s3_uri",
                scheduled=tx.send_at is not None,
                idempotency_key=key is not None,
            )
        return Response(accepted, status_code=HTTP_202_ACCEPTED)

    @get(
        summary="List transactions, newest first",
        responses=error_responses(Code.VALIDATION_ERROR, Code.INVALID_CURSOR),
    )
    async def list_transactions(
        self,
        deps: Deps,
        tenant: Tenant,
        status: StatusFilter = None,
        cursor: Cursor = None,
        limit: PageLimit = _DEFAULT_LIMIT,
    ) -> TransactionPage:
        found = await page_transactions(
            deps.store, tenant, status=status, after=newest_after(cursor), limit=limit + 1
        )
        return TransactionPage(
            items=[transaction_summary(tx) for tx in found[:limit]],
            next_cursor=newest_cursor([(tx.created_at, tx.id) for tx in found], limit),
        )

    @get(
        "/{transaction_id:str}",
        summary="Get a transaction",
        description=(
            "Its status, counters, ETA and history, as read at most `STATUS_MAX_AGE_SECONDS`"
            " (1 s) ago: polls are answered from a recent read, refreshed behind them, so they"
            " stay fast while the campaign keeps the store busy. A cancel or reschedule made"
            " through the same gateway shows at once."
        ),
        responses=error_responses(Code.VALIDATION_ERROR, Code.TRANSACTION_NOT_FOUND),
    )
    async def get_transaction(
        self, transaction_id: FromPath[str], deps: Deps, tenant: Tenant
    ) -> TransactionView:
        return transaction_view(await own_transaction(deps, tenant, transaction_id, recent=True))

    @get(
        "/{transaction_id:str}/errors",
        summary="The rows of the file that did not become messages",
        responses=error_responses(
            Code.VALIDATION_ERROR, Code.TRANSACTION_NOT_FOUND, Code.INVALID_CURSOR
        ),
    )
    async def list_row_errors(
        self,
        transaction_id: FromPath[str],
        deps: Deps,
        tenant: Tenant,
        code: ErrorCodeFilter = None,
        cursor: Cursor = None,
        limit: PageLimit = _DEFAULT_LIMIT,
    ) -> RowErrorPage:
        tx = await own_transaction(deps, tenant, transaction_id)
        after = None
        if cursor is not None:
            position = decode_cursor(cursor, RowPosition)
            after = (position.row, position.id)
        found = await page_row_errors(deps.store, tx.id, after=after, limit=limit + 1, code=code)
        page = found[:limit]
        next_cursor = (
            encode_cursor(RowPosition(row=page[-1].error.row, id=page[-1].id))
            if len(found) > limit
            else None
        )
        return RowErrorPage(
            items=[row_error_item(stored.error) for stored in page], next_cursor=next_cursor
        )

    @get(
        "/{transaction_id:str}/errors.csv",
        summary="The rows in error as a CSV file, to fix and resubmit",
        description=(
            "The file's header row plus `error_code` and `error_message`; one line per row "
            "error, in row order, with the row's values as they were in the file."
        ),
        media_type="text/csv",
        responses=error_responses(Code.VALIDATION_ERROR, Code.TRANSACTION_NOT_FOUND),
    )
    async def export_row_errors(
        self,
        transaction_id: FromPath[str],
        deps: Deps,
        tenant: Tenant,
        code: ErrorCodeFilter = None,
    ) -> Stream:
        tx = await own_transaction(deps, tenant, transaction_id)
        return Stream(
            row_errors_csv(deps.store, tx, code=code),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{tx.id}-errors.csv"'},
        )

    @get(
        "/{transaction_id:str}/status",
        summary="Progress and estimated completion",
        description=(
            "As read at most `STATUS_MAX_AGE_SECONDS` (1 s) ago, like `GET"
            " /transactions/{transaction_id}`."
        ),
        responses=error_responses(Code.VALIDATION_ERROR, Code.TRANSACTION_NOT_FOUND),
    )
    async def get_progress(
        self, transaction_id: FromPath[str], deps: Deps, tenant: Tenant
    ) -> TransactionProgress:
        tx = await own_transaction(deps, tenant, transaction_id, recent=True)
        return compute_progress(tx, datetime.now(UTC))

    @post(
        "/{transaction_id:str}/cancel",
        status_code=HTTP_202_ACCEPTED,
        summary="Cancel a transaction",
        description=(
            "Stops what has not been sent yet: pending schedules are purged and every "
            "message still waiting (SCHEDULED or READY_TO_SEND) becomes CANCELLED; the "
            "transaction becomes CANCELLED once the sends already in flight have ended "
            "(`cancel_requested_at` is set at once). Any transaction not yet SENT nor final "
            "can be cancelled; asking again is answered the same way. No body."
        ),
        responses=error_responses(
            Code.VALIDATION_ERROR, Code.TRANSACTION_NOT_FOUND, Code.TX_NOT_CANCELLABLE
        ),
    )
    async def cancel_transaction(
        self, transaction_id: FromPath[str], deps: Deps, tenant: Tenant, caller: Caller
    ) -> TransactionView:
        tx = await own_transaction(deps, tenant, transaction_id)
        with structlog.contextvars.bound_contextvars(transaction_id=tx.id):
            cancelled = await request_cancel(deps.store, deps.broker, tx)
            deps.statuses.forget((tenant, tx.id))
            await record_action(
                deps.store,
                caller,
                ActionKind.CANCEL,
                transaction_id=tx.id,
                details={"status": tx.status},
            )
            return transaction_view(cancelled)

    @post(
        "/{transaction_id:str}/reschedule",
        status_code=HTTP_202_ACCEPTED,
        summary="Move a scheduled transaction to another time",
        description=(
            "Only while the transaction is SCHEDULED (none of its slots has fired) and not "
            "being cancelled. `send_at` is when its first slot now fires; every slot moves by "
            "the same amount, so rows with their own times keep their spacing. Limits as for "
            "a submission: at most 5 minutes back (then: at once) and the last slot at most "
            "`max_schedule_days` (30) days ahead. Messages keep the `send_at` of their row; "
            "`schedule.shift_seconds` says how far the slots moved."
        ),
        responses=error_responses(
            Code.VALIDATION_ERROR,
            Code.INVALID_SEND_AT,
            Code.SEND_AT_IN_PAST,
            Code.SEND_AT_TOO_FAR,
            Code.TRANSACTION_NOT_FOUND,
            Code.TX_NOT_RESCHEDULABLE,
            Code.UNSUPPORTED_MEDIA_TYPE,
        ),
    )
    async def reschedule_transaction(
        self,
        transaction_id: FromPath[str],
        data: JSONBody[RescheduleInput],
        deps: Deps,
        settings: Settings,
        tenant: Tenant,
        caller: Caller,
    ) -> TransactionView:
        tx = await own_transaction(deps, tenant, transaction_id)
        max_days = settings.max_schedule_days
        send_at = _check_send_at(data.send_at, max_days)
        with structlog.contextvars.bound_contextvars(transaction_id=tx.id):
            moved = await request_reschedule(deps.store, deps.broker, tx, send_at, max_days)
            deps.statuses.forget((tenant, tx.id))
            await record_action(
                deps.store,
                caller,
                ActionKind.RESCHEDULE,
                transaction_id=tx.id,
                details={"send_at": send_at.isoformat(), "was": _iso(tx.send_at)},
            )
        return transaction_view(moved)

    @get(
        "/{transaction_id:str}/messages",
        summary="Each recipient's message: its status and what SES said",
        description=(
            "One item per message (valid row), in row order: the address, the row's "
            "placeholder values, the status, the send attempts and the last one's error, "
            "and the SES events the tracker recorded (Send, Delivery, Bounce, Complaint, "
            "Reject, DeliveryDelay, ...). `status` keeps only the messages in it."
        ),
        responses=error_responses(
            Code.VALIDATION_ERROR, Code.TRANSACTION_NOT_FOUND, Code.INVALID_CURSOR
        ),
    )
    async def list_messages(
        self,
        transaction_id: FromPath[str],
        deps: Deps,
        tenant: Tenant,
        status: MessageStatusFilter = None,
        cursor: Cursor = None,
        limit: PageLimit = _DEFAULT_LIMIT,
    ) -> MessagePage:
        tx = await own_transaction(deps, tenant, transaction_id)
        after = 0
        if cursor is not None:
            position = decode_cursor(cursor, RowPosition)
            if position.id != message_id(tx.id, position.row):
                raise ApiError(Code.INVALID_CURSOR, "the cursor is not one of this listing")
            after = position.row
        found = await page_messages(deps.store, tx.id, status=status, after=after, limit=limit + 1)
        page = found[:limit]
        next_cursor = (
            encode_cursor(RowPosition(row=page[-1].row, id=page[-1].id))
            if len(found) > limit
            else None
        )
        return MessagePage(items=[message_item(m) for m in page], next_cursor=next_cursor)

    @post(
        "/{transaction_id:str}/retry-failed",
        status_code=HTTP_202_ACCEPTED,
        summary="Send the failed messages again, as a new transaction",
        description=(
            "For a COMPLETED transaction: a new transaction, submitted as a file would be, "
            "of the recipients whose message is FAILED or EXPIRED (never BOUNCED, "
            "COMPLAINED, SUPPRESSED, DELIVERED or CANCELLED), with the same template, "
            "`callback_url` and `metadata` plus `metadata.retry_of` (this transaction's id); "
            "it is sent at once. Answers the new transaction; this one's `retried_as` names "
            "it. Asking again answers the same transaction and creates nothing. No body."
        ),
        responses=error_responses(
            Code.VALIDATION_ERROR,
            Code.TRANSACTION_NOT_FOUND,
            Code.TX_NOT_RETRYABLE,
            Code.NOTHING_TO_RETRY,
        ),
    )
    async def retry_failed(
        self,
        transaction_id: FromPath[str],
        deps: Deps,
        settings: Settings,
        tenant: Tenant,
        caller: Caller,
    ) -> TransactionView:
        tx = await own_transaction(deps, tenant, transaction_id)
        with structlog.contextvars.bound_contextvars(transaction_id=tx.id):
            retry = await _retry(deps, settings, caller.mode, tx)
            await record_action(
                deps.store,
                caller,
                ActionKind.RETRY_FAILED,
                transaction_id=tx.id,
                details={"retry_id": retry.id},
            )
            return transaction_view(retry)


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


async def _retry(
    deps: GatewayDeps, settings: GatewaySettings, mode: str, tx: Transaction
) -> Transaction:
    """The transaction retrying ``tx``'s failures: made now (see ``retry``), or the one an
    earlier request made."""
    retry = await find_transaction(deps.store, tx.tenant, retry_id(tx.id))
    if retry is None:
        check_retryable(tx)
        made = await _make_retry(deps, settings, mode, tx)
        # False: a concurrent request inserted it first; its file is the same as ours.
        retry = made if await insert_new_transaction(deps.store, made) else None
        if retry is None:
            retry = await find_transaction(deps.store, tx.tenant, made.id)
            assert retry is not None  # inserted by the other request, never deleted
    await mark_retried(deps.store, tx, retry.id)
    deps.statuses.forget((tx.tenant, tx.id))
    if retry.status == TxStatus.ACCEPT:
        # As a replayed submission: announce again (a no-op if it was announced).
        await _announce(deps.broker, retry, retry.status_history[0])
    return retry


async def _make_retry(
    deps: GatewayDeps, settings: GatewaySettings, mode: str, tx: Transaction
) -> Transaction:
    new_id = retry_id(tx.id)
    key = upload_key(tx.tenant, new_id)
    upload = S3Upload(deps.s3, settings.s3_bucket, key, settings.upload_part_bytes)
    rows = await write_retry_file(deps.store, upload, tx)
    now = utc_now()
    log.info("retry file written", retry_id=new_id, rows=rows, bytes=upload.size)
    return Transaction(
        id=new_id,
        tenant=tx.tenant,
        status=TxStatus.ACCEPT,
        template_id=tx.template_id,
        source=S3Location(bucket=settings.s3_bucket, key=key),
        filename=f"retry-of-{tx.id}.csv",
        callback_url=tx.callback_url,
        metadata=retry_metadata(tx),
        status_history=[StatusEntry(status=TxStatus.ACCEPT, at=now, metadata={RETRY_OF: tx.id})],
        mode=mode,
        created_at=now,
        updated_at=now,
    )


async def _validate(
    request: Request[Any, Any, Any], deps: GatewayDeps, settings: GatewaySettings, tenant: str
) -> ValidationReport:
    json = _media_type(request) == _JSON
    if json:
        report = await _check_json(request, deps, settings, tenant)
    else:
        report = await _check_form(request, deps, settings, tenant)
    log.info(
        "file validated",
        source="s3_uri" if json else "upload",
        valid=report.valid,
        rows=report.rows.total,
        invalid=report.rows.invalid,
        file_error=None if report.file_error is None else report.file_error.code,
    )
    return report
