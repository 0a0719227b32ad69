"""``/api/v1/transactions``: submit a campaign, list and read transactions, errors, progress.

A submission streams its CSV into S3 while the form arrives (see ``form`` and ``upload``),
then records the transaction in ACCEPT and announces it: the status event on
``email.tx.status.ACCEPT`` and ``TxAccepted`` on ``email.tx.accepted`` for ingest. Both
publishes carry business-key message ids, so a later re-publish of a stuck ACCEPT is
deduplicated by the server.
"""

from __future__ import annotations

import uuid
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final
from urllib.parse import urlsplit

import msgspec
import structlog
from litestar import Controller, Request, get, post
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
)
from litestar.params import FromPath, QueryParameter
from litestar.status_codes import HTTP_202_ACCEPTED

from services.gateway.cursor import RowPosition, TimePosition, decode_cursor, encode_cursor
from services.gateway.deps import Deps, GatewayDeps, Settings
from services.gateway.errors import ApiError, Code, error_responses
from services.gateway.form import FieldRead, FileData, FileEnded, FileStarted, read_form
from services.gateway.progress import TransactionProgress, compute_progress
from services.gateway.records import (
    find_template,
    find_transaction,
    insert_transaction,
    page_row_errors,
    page_transactions,
    utc_now,
)
from services.gateway.tenant import Caller, Tenant
from services.gateway.upload import S3Upload
from services.gateway.views import (
    RowErrorPage,
    TransactionAccepted,
    TransactionPage,
    TransactionView,
    row_error_item,
    transaction_summary,
    transaction_view,
)
from shared.broker import Broker
from shared.documents import S3Location, StatusEntry, Template, Transaction
from shared.errors import BrokerUnavailable
from shared.events import TxAccepted
from shared.log import get_logger
from shared.settings import GatewaySettings
from shared.status import TxStatus
from shared.topology import Subjects
from shared.transitions import publish_status

__all__ = ["TransactionController", "upload_key"]

log = get_logger("gateway.transactions")

FILE_FIELD: Final = "file"
_TEXT_FIELDS: Final = frozenset({"template_id", "callback_url", "send_at"})
# Room for the form's text fields, part headers and boundaries around the file.
_FORM_OVERHEAD: Final = 64 * 1024
_MAX_URL_CHARS: Final = 2048
_DEFAULT_LIMIT: Final = 50
_MAX_LIMIT: Final = 200

PageLimit = Annotated[int, QueryParameter(ge=1, le=_MAX_LIMIT, description="Page size.")]
Cursor = Annotated[
    str | None,
    QueryParameter(description="`next_cursor` of the previous page.", max_length=512),
]
StatusFilter = Annotated[TxStatus | None, QueryParameter(description="Only this status.")]


def upload_key(tenant: str, transaction_id: str) -> str:
    return f"uploads/{tenant}/{transaction_id}.csv"


class _Submission(msgspec.Struct, frozen=True, kw_only=True):
    """The text fields of a submission, checked."""

    template_id: str
    callback_url: str | None
    send_at: datetime | None


@dataclass
class _SubmissionOperation(Operation):
    """Documents the multipart body the handler reads as a stream (Litestar cannot see it)."""

    def __post_init__(self) -> None:
        text = Schema(type=OpenAPIType.STRING)
        self.request_body = RequestBody(
            required=True,
            content={
                "multipart/form-data": OpenAPIMediaType(
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
                            "callback_url": Schema(
                                type=OpenAPIType.STRING,
                                format=OpenAPIFormat.URI,
                                description="http or https URL for status callbacks.",
                            ),
                            "send_at": Schema(
                                type=OpenAPIType.STRING,
                                format=OpenAPIFormat.DATE_TIME,
                                description="RFC 3339 with a UTC offset; absent = now.",
                            ),
                        },
                        additional_properties=False,
                    )
                )
            },
        )


def _field_error(field: str, message: str) -> ApiError:
    return ApiError(Code.VALIDATION_ERROR, message, details={"field": field})


def _check_callback_url(value: str) -> str:
    url = value.strip()
    try:
        parts = urlsplit(url)
        valid = parts.scheme in {"http", "https"} and bool(parts.hostname)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
    except ValueError:
        valid = False
    if not valid or len(url) > _MAX_URL_CHARS or any(c.isspace() for c in url):
        raise ApiError(
            Code.INVALID_CALLBACK_URL,
            "callback_url must be an absolute http or https URL",
            details={"field": "callback_url", "value": value[:_MAX_URL_CHARS]},
        )
    return url


def _check_send_at(value: str) -> datetime:
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
    # The store keeps milliseconds.
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def _check_fields(fields: dict[str, str]) -> _Submission:
    template_id = fields.get("template_id", "").strip()
    if not template_id:
        raise _field_error("template_id", "template_id is required")
    callback_url = fields.get("callback_url", "").strip()
    send_at = fields.get("send_at", "").strip()
    return _Submission(
        template_id=template_id,
        callback_url=_check_callback_url(callback_url) if callback_url else None,
        send_at=_check_send_at(send_at) if send_at else None,
    )


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

    async def receive(self, request: Request[Any, Any, Any]) -> _Submission:
        """Read the body and complete the upload, or abort it and raise."""
        try:
            submission = await self._read(request)
            if self.upload.size == 0:
                raise ApiError(Code.EMPTY_FILE, "the file is empty", details={"field": FILE_FIELD})
            await self.upload.complete()
        except BaseException:
            await self.upload.abort()
            raise
        return submission

    async def _read(self, request: Request[Any, Any, Any]) -> _Submission:
        events = read_form(
            request.stream(),
            request.headers.get("content-type"),
            file_fields=frozenset({FILE_FIELD}),
        )
        async with aclosing(events):
            async for event in events:
                match event:
                    case FieldRead(name=name, value=value):
                        self._add_field(name, value)
                    case FileStarted(filename=filename):
                        if self.file_seen:
                            raise _field_error(FILE_FIELD, "only one file per submission")
                        self.file_seen = True
                        self.filename = filename
                        # Fail before the upload when the fields came first.
                        if "template_id" in self.fields:
                            await self._find_template(_check_fields(self.fields))
                    case FileData(data=data):
                        if self.upload.size + len(data) > self.settings.max_upload_bytes:
                            raise ApiError(
                                Code.FILE_TOO_LARGE,
                                f"the file is larger than {self.settings.max_upload_bytes} bytes",
                                details={"max_bytes": self.settings.max_upload_bytes},
                            )
                        await self.upload.write(data)
                    case FileEnded():
                        pass
        if not self.file_seen:
            raise ApiError(
                Code.MISSING_FILE, "the form has no 'file' field", details={"field": FILE_FIELD}
            )
        submission = _check_fields(self.fields)
        await self._find_template(submission)
        return submission

    def _add_field(self, name: str, value: str) -> None:
        if name not in _TEXT_FIELDS:
            raise _field_error(name, f"unknown form field {name!r}")
        if name in self.fields:
            raise _field_error(name, f"form field {name!r} given twice")
        self.fields[name] = value

    async def _find_template(self, submission: _Submission) -> None:
        if self.template is not None:
            return
        self.template = await find_template(self.deps.store, self.tenant, submission.template_id)
        if self.template is None:
            raise ApiError(
                Code.TEMPLATE_NOT_FOUND,
                f"no template {submission.template_id!r}",
                details={"field": "template_id", "value": submission.template_id},
            )


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
            "multipart/form-data with `file` (CSV), `template_id`, optional `callback_url` "
            "and `send_at`. The file streams to S3; processing continues asynchronously."
        ),
        # The form is read as a stream; its limits are enforced while reading.
        request_max_body_size=None,
        operation_class=_SubmissionOperation,
        responses=error_responses(
            Code.VALIDATION_ERROR,
            Code.INVALID_FORM,
            Code.MISSING_FILE,
            Code.EMPTY_FILE,
            Code.TEMPLATE_NOT_FOUND,
            Code.INVALID_CALLBACK_URL,
            Code.INVALID_SEND_AT,
            Code.FILE_TOO_LARGE,
            Code.UNSUPPORTED_MEDIA_TYPE,
        ),
    )
    async def submit_transaction(
        self,
        request: Request[Any, Any, Any],
        deps: Deps,
        settings: Settings,
        tenant: Tenant,
        caller: Caller,
    ) -> TransactionAccepted:
        announced = request.content_length
        if announced is not None and announced > settings.max_upload_bytes + _FORM_OVERHEAD:
            raise ApiError(
                Code.FILE_TOO_LARGE,
                f"the file is larger than {settings.max_upload_bytes} bytes",
                details={"max_bytes": settings.max_upload_bytes},
            )
        transaction_id = uuid.uuid4().hex
        with structlog.contextvars.bound_contextvars(transaction_id=transaction_id):
            receiver = _Receiver(deps, settings, tenant, transaction_id)
            submission = await receiver.receive(request)
            now = utc_now()
            entry = StatusEntry(status=TxStatus.ACCEPT, at=now)
            tx = Transaction(
                id=transaction_id,
                tenant=tenant,
                status=TxStatus.ACCEPT,
                template_id=submission.template_id,
                source=S3Location(bucket=receiver.upload.bucket, key=receiver.upload.key),
                filename=receiver.filename,
                callback_url=submission.callback_url,
                send_at=submission.send_at,
                status_history=[entry],
                mode=caller.mode,
                created_at=now,
                updated_at=now,
            )
            await insert_transaction(deps.store, tx)
            await _announce(deps.broker, tx, entry)
            log.info(
                "transaction accepted",
                template_id=tx.template_id,
                bytes=receiver.upload.size,
                parts=receiver.upload.parts,
                scheduled=tx.send_at is not None,
            )
        return TransactionAccepted(
            transaction_id=tx.id,
            status=tx.status,
            template_id=tx.template_id,
            callback_url=tx.callback_url,
            send_at=tx.send_at,
            filename=tx.filename,
            size_bytes=receiver.upload.size,
            created_at=tx.created_at,
        )

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
        after = None
        if cursor is not None:
            position = decode_cursor(cursor, TimePosition)
            after = (position.created_at, position.id)
        found = await page_transactions(
            deps.store, tenant, status=status, after=after, limit=limit + 1
        )
        page = found[:limit]
        next_cursor = (
            encode_cursor(TimePosition(created_at=page[-1].created_at, id=page[-1].id))
            if len(found) > limit
            else None
        )
        return TransactionPage(
            items=[transaction_summary(tx) for tx in page], next_cursor=next_cursor
        )

    @get(
        "/{transaction_id:str}",
        summary="Get a transaction",
        responses=error_responses(Code.TRANSACTION_NOT_FOUND),
    )
    async def get_transaction(
        self, transaction_id: FromPath[str], deps: Deps, tenant: Tenant
    ) -> TransactionView:
        return transaction_view(await _existing(deps, tenant, transaction_id))

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
        cursor: Cursor = None,
        limit: PageLimit = _DEFAULT_LIMIT,
    ) -> RowErrorPage:
        tx = await _existing(deps, tenant, transaction_id)
        after = None
        if cursor is not None:
            position = decode_cursor(cursor, RowPosition)
            after = (position.row, position.id)
        found = await page_row_errors(deps.store, tx.id, after=after, limit=limit + 1)
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
        "/{transaction_id:str}/status",
        summary="Progress and estimated completion",
        responses=error_responses(Code.TRANSACTION_NOT_FOUND),
    )
    async def get_progress(
        self, transaction_id: FromPath[str], deps: Deps, tenant: Tenant
    ) -> TransactionProgress:
        tx = await _existing(deps, tenant, transaction_id)
        return compute_progress(tx, datetime.now(UTC))


async def _existing(deps: GatewayDeps, tenant: str, transaction_id: str) -> Transaction:
    tx = await find_transaction(deps.store, tenant, transaction_id)
    if tx is None:
        raise ApiError(
            Code.TRANSACTION_NOT_FOUND,
            f"no transaction {transaction_id!r}",
            details={"transaction_id": transaction_id},
        )
    return tx
