"""The API's errors: every code in one place, and the one shape every error answers with.

    {"error": {"code": "TEMPLATE_NOT_FOUND", "message": "...", "details": {...}}}

Handlers raise ``ApiError(Code.X, message, details=...)``; the exception handlers below turn
it — and Litestar's own exceptions (validation, unknown route, wrong method, body too large),
our ``RetryableError`` tree (503) and anything unexpected (500) — into that shape.
"""

from __future__ import annotations

from enum import StrEnum
from http import HTTPStatus
from typing import TYPE_CHECKING, Annotated, Any, Final

import msgspec
from litestar import MediaType, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import ResponseSpec

from shared.errors import PlatformError, RetryableError, TemplateError
from shared.log import get_logger

if TYPE_CHECKING:
    from litestar import Request
    from litestar.types import ExceptionHandlersMap

__all__ = [
    "CODES",
    "ApiError",
    "Code",
    "CodeSpec",
    "ErrorBody",
    "ErrorDetail",
    "error_responses",
    "exception_handlers",
]

log = get_logger("gateway.errors")


class Code(StrEnum):
    """Every error code the API answers with."""

    VALIDATION_ERROR = "VALIDATION_ERROR"
    UNAUTHORIZED = "UNAUTHORIZED"
    FORBIDDEN = "FORBIDDEN"
    RATE_LIMITED = "RATE_LIMITED"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    TEMPLATE_SYNTAX_ERROR = "TEMPLATE_SYNTAX_ERROR"
    TEMPLATE_NOT_FOUND = "TEMPLATE_NOT_FOUND"
    TRANSACTION_NOT_FOUND = "TRANSACTION_NOT_FOUND"
    KEY_NOT_FOUND = "KEY_NOT_FOUND"
    CALLBACK_NOT_FOUND = "CALLBACK_NOT_FOUND"
    DEAD_LETTER_NOT_FOUND = "DEAD_LETTER_NOT_FOUND"
    DEAD_LETTER_CLOSED = "DEAD_LETTER_CLOSED"
    DEAD_LETTER_NOT_RETRYABLE = "DEAD_LETTER_NOT_RETRYABLE"
    INVALID_FORM = "INVALID_FORM"
    MISSING_FILE = "MISSING_FILE"
    EMPTY_FILE = "EMPTY_FILE"
    INVALID_FILE = "INVALID_FILE"
    FILE_TOO_LARGE = "FILE_TOO_LARGE"
    INVALID_CALLBACK_URL = "INVALID_CALLBACK_URL"
    CALLBACK_URL_NOT_ALLOWED = "CALLBACK_URL_NOT_ALLOWED"
    INVALID_SEND_AT = "INVALID_SEND_AT"
    SEND_AT_IN_PAST = "SEND_AT_IN_PAST"
    SEND_AT_TOO_FAR = "SEND_AT_TOO_FAR"
    TX_NOT_CANCELLABLE = "TX_NOT_CANCELLABLE"
    TX_NOT_RESCHEDULABLE = "TX_NOT_RESCHEDULABLE"
    TX_NOT_RETRYABLE = "TX_NOT_RETRYABLE"
    NOTHING_TO_RETRY = "NOTHING_TO_RETRY"
    SUPPRESSION_NOT_FOUND = "SUPPRESSION_NOT_FOUND"
    INVALID_METADATA = "INVALID_METADATA"
    SOURCE_NOT_FOUND = "SOURCE_NOT_FOUND"
    SOURCE_NOT_ALLOWED = "SOURCE_NOT_ALLOWED"
    INVALID_IDEMPOTENCY_KEY = "INVALID_IDEMPOTENCY_KEY"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    IDEMPOTENCY_KEY_IN_USE = "IDEMPOTENCY_KEY_IN_USE"
    INVALID_CURSOR = "INVALID_CURSOR"
    INVALID_UNSUBSCRIBE_LINK = "INVALID_UNSUBSCRIBE_LINK"
    SNS_MESSAGE_INVALID = "SNS_MESSAGE_INVALID"
    SNS_TOPIC_UNKNOWN = "SNS_TOPIC_UNKNOWN"
    SNS_CERT_URL_INVALID = "SNS_CERT_URL_INVALID"
    SNS_SIGNATURE_INVALID = "SNS_SIGNATURE_INVALID"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    INTERNAL_ERROR = "INTERNAL_ERROR"


class CodeSpec(msgspec.Struct, frozen=True, kw_only=True):
    status: int
    description: str


# The HTTP status and the meaning of each code: one decision, one place (docs/errors.md is
# generated from it by ``error_catalogue``).
CODES: Final[dict[Code, CodeSpec]] = {
    Code.VALIDATION_ERROR: CodeSpec(
        status=400,
        description=(
            "A field, query parameter or body that does not follow the documented rules; "
            "`details.field` names it when there is one."
        ),
    ),
    Code.UNAUTHORIZED: CodeSpec(
        status=401,
        description="No usable API key: none, malformed, unknown or revoked (one answer for all).",
    ),
    Code.FORBIDDEN: CodeSpec(
        status=403,
        description="A valid key that may not do this (an admin endpoint, a non-admin key).",
    ),
    Code.RATE_LIMITED: CodeSpec(
        status=429, description="Over the key's request rate; `Retry-After` says when to come back."
    ),
    Code.NOT_FOUND: CodeSpec(status=404, description="No such route."),
    Code.METHOD_NOT_ALLOWED: CodeSpec(
        status=405, description="The route exists but not with this HTTP method."
    ),
    Code.UNSUPPORTED_MEDIA_TYPE: CodeSpec(
        status=415, description="A body of a Content-Type the endpoint does not take."
    ),
    Code.PAYLOAD_TOO_LARGE: CodeSpec(
        status=413, description="A request body (other than an uploaded file) over its limit."
    ),
    Code.TEMPLATE_SYNTAX_ERROR: CodeSpec(
        status=400,
        description=(
            "A template whose subject or body does not parse, or is nested too deeply to "
            "compile (brackets, filter chains or loops nested past the parser's or Python's "
            "limits); `message` names the part."
        ),
    ),
    # A bad field of the request, not a missing resource at the request's URL.
    Code.TEMPLATE_NOT_FOUND: CodeSpec(
        status=400,
        description=(
            "No template of the tenant with this id: 400 when a submission names it, "
            "404 at the template's own URL."
        ),
    ),
    Code.TRANSACTION_NOT_FOUND: CodeSpec(
        status=404, description="No transaction of the tenant with this id."
    ),
    Code.KEY_NOT_FOUND: CodeSpec(status=404, description="No API key of the tenant with this id."),
    Code.CALLBACK_NOT_FOUND: CodeSpec(
        status=404,
        description="No callback with this id among the transaction's (`webhook-id`).",
    ),
    Code.DEAD_LETTER_NOT_FOUND: CodeSpec(status=404, description="No dead letter with this id."),
    Code.DEAD_LETTER_CLOSED: CodeSpec(
        status=409,
        description=(
            "The dead letter was already retried or discarded (`details.state`): each is "
            "done once; its `history` says by whom and when."
        ),
    ),
    Code.DEAD_LETTER_NOT_RETRYABLE: CodeSpec(
        status=409,
        description=(
            "A dead letter of kind `message` (one recipient out of send retries) is not "
            "retried on its own: `POST /api/v1/transactions/{id}/retry-failed` "
            "(`details.retry_with`) resends every FAILED message of its transaction once it "
            "is COMPLETED. Discarding it is allowed."
        ),
    ),
    Code.INVALID_FORM: CodeSpec(
        status=400,
        description=(
            "A multipart/form-data body that cannot be read: malformed, cut short, too many "
            "parts, a field too long or not UTF-8."
        ),
    ),
    Code.MISSING_FILE: CodeSpec(status=400, description="A submission form without a `file` part."),
    Code.EMPTY_FILE: CodeSpec(status=400, description="A submitted file of 0 bytes."),
    Code.INVALID_FILE: CodeSpec(
        status=400,
        description=(
            "A submitted file (uploaded, or at `source.s3_uri`) whose header row ingest would "
            "refuse, or an uploaded file with more data rows than `max_rows` "
            "(`TOO_MANY_ROWS`, rows counted as ingest counts them): `details.file_error` is "
            "that file error (`code`, `message`, `details`; see File errors), `details.row` "
            "is 1 (the header) or the first row past the limit. Nothing is kept. What only "
            "the rest of the file shows (no valid row, bytes after the header that are not "
            "UTF-8, too many rows in a `source` file) still ends the transaction FAILED, as "
            "does a header longer than 64 KiB."
        ),
    ),
    Code.FILE_TOO_LARGE: CodeSpec(
        status=413,
        description=(
            "A submitted file over the upload limit, `max_upload_bytes` (default 100 MiB), or "
            "a multipart/form-data body over that limit plus 64 KiB for its other parts."
        ),
    ),
    Code.INVALID_CALLBACK_URL: CodeSpec(
        status=400,
        description=(
            "`callback_url` is not an absolute http or https URL, or has user information "
            "(`user:password@`)."
        ),
    ),
    Code.CALLBACK_URL_NOT_ALLOWED: CodeSpec(
        status=400,
        description=(
            "`callback_url`'s host is an IP address (in any spelling) that is not public: "
            "loopback, private, link-local, shared (100.64/10) or reserved, and not in "
            "`callback_allowed_networks`."
        ),
    ),
    Code.INVALID_SEND_AT: CodeSpec(
        status=400, description="`send_at` is not an RFC 3339 date-time with a UTC offset."
    ),
    Code.SEND_AT_IN_PAST: CodeSpec(
        status=400,
        description=(
            "`send_at` is more than 5 minutes in the past (a time less far back means now)."
        ),
    ),
    Code.SEND_AT_TOO_FAR: CodeSpec(
        status=400,
        description=(
            "`send_at` is more than `max_schedule_days` (default 30) days ahead; for a "
            "reschedule, the transaction's last slot would be."
        ),
    ),
    Code.TX_NOT_CANCELLABLE: CodeSpec(
        status=409,
        description=(
            "The transaction cannot be cancelled any more: it is SENT (every message has "
            "gone out), COMPLETED, FAILED or CANCELLED."
        ),
    ),
    Code.TX_NOT_RESCHEDULABLE: CodeSpec(
        status=409,
        description=(
            "The transaction cannot be rescheduled: only a SCHEDULED one can (none of its "
            "slots has fired), and not once its cancellation was asked for."
        ),
    ),
    Code.TX_NOT_RETRYABLE: CodeSpec(
        status=409,
        description=(
            "retry-failed on a transaction that is not COMPLETED: a FAILED one failed as a "
            "whole (submit a corrected file), a CANCELLED one was stopped on purpose, any "
            "other is still running."
        ),
    ),
    Code.NOTHING_TO_RETRY: CodeSpec(
        status=409,
        description="retry-failed on a transaction without any FAILED or EXPIRED message.",
    ),
    Code.SUPPRESSION_NOT_FOUND: CodeSpec(
        status=404, description="The address is not on the tenant's suppression list."
    ),
    Code.INVALID_METADATA: CodeSpec(
        status=400, description="`metadata` is not an object of string values within its limits."
    ),
    Code.SOURCE_NOT_FOUND: CodeSpec(
        status=400, description="`source.s3_uri` names no object of the bucket."
    ),
    Code.SOURCE_NOT_ALLOWED: CodeSpec(
        status=400,
        description="`source.s3_uri` names an object outside the tenant's prefix of our bucket.",
    ),
    Code.INVALID_IDEMPOTENCY_KEY: CodeSpec(
        status=400,
        description="An `Idempotency-Key` that is not 1-255 printable ASCII characters.",
    ),
    Code.IDEMPOTENCY_KEY_REUSED: CodeSpec(
        status=409,
        description="The `Idempotency-Key` was used with a different request (fields or file).",
    ),
    Code.IDEMPOTENCY_KEY_IN_USE: CodeSpec(
        status=409,
        description=(
            "The `Idempotency-Key`'s first request is still being processed; `Retry-After` "
            "says when to try again."
        ),
    ),
    Code.INVALID_CURSOR: CodeSpec(
        status=400, description="A `cursor` that is not a `next_cursor` this API gave."
    ),
    Code.INVALID_UNSUBSCRIBE_LINK: CodeSpec(
        status=404,
        description=(
            "An unsubscribe link (`/u/{token}`) whose token is malformed, cut short or not "
            "signed by us; nothing was changed."
        ),
    ),
    # The SNS webhook (`/api/v1/webhooks/ses`): SNS does not retry a 4xx, so each of these
    # is final for the message; nothing was published.
    Code.SNS_MESSAGE_INVALID: CodeSpec(
        status=400,
        description=(
            "SNS webhook: a body that is not an SNS message (not JSON, a field missing, an "
            "unknown `Type`)."
        ),
    ),
    Code.SNS_TOPIC_UNKNOWN: CodeSpec(
        status=403,
        description=(
            "SNS webhook: a `TopicArn` not in `sns_topic_arns`; when that is empty, any "
            "`TopicArn` at all."
        ),
    ),
    Code.SNS_CERT_URL_INVALID: CodeSpec(
        status=403,
        description=(
            "SNS webhook: `SigningCertURL` (or a confirmation's `SubscribeURL`) is not an "
            "https URL on a host `sns_cert_host_pattern` matches."
        ),
    ),
    Code.SNS_SIGNATURE_INVALID: CodeSpec(
        status=403,
        description=(
            "SNS webhook: the signature does not verify: an unknown `SignatureVersion`, a "
            "signature of other content, or no usable certificate at `SigningCertURL`."
        ),
    ),
    Code.SERVICE_UNAVAILABLE: CodeSpec(
        status=503,
        description=(
            "A service the gateway depends on is unavailable; try again after `Retry-After`."
        ),
    ),
    Code.INTERNAL_ERROR: CodeSpec(
        status=500, description="An unexpected error on our side; it is logged."
    ),
}
_STATUS: Final[dict[Code, int]] = {code: spec.status for code, spec in CODES.items()}
# The same, in the OpenAPI schema (the component ``Code``'s description).
_CODE_LIST: Final = "\n".join(
    f"- `{code}` ({spec.status}): {spec.description}" for code, spec in CODES.items()
)

# Litestar's own HTTP exceptions, by status; any other status keeps it and gets the nearest.
_CODE_OF_STATUS: Final[dict[int, Code]] = {
    400: Code.VALIDATION_ERROR,
    401: Code.UNAUTHORIZED,
    403: Code.FORBIDDEN,
    404: Code.NOT_FOUND,
    405: Code.METHOD_NOT_ALLOWED,
    413: Code.PAYLOAD_TOO_LARGE,
    415: Code.UNSUPPORTED_MEDIA_TYPE,
    429: Code.RATE_LIMITED,
    503: Code.SERVICE_UNAVAILABLE,
}


class ErrorDetail(msgspec.Struct, frozen=True, kw_only=True):
    code: Annotated[Code, msgspec.Meta(description=_CODE_LIST)]
    message: str
    details: dict[str, Any] = {}


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    error: ErrorDetail


class ApiError(Exception):
    """An answer the client must act on: a code (which fixes the HTTP status) and details."""

    def __init__(
        self,
        code: Code,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        status_code: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers or {}
        # Only for a code that means different things in different places: TEMPLATE_NOT_FOUND
        # is a bad field (400) in a submission and a missing resource (404) at its own URL.
        self.status_code = status_code or _STATUS[code]


def _answer(
    code: Code,
    message: str,
    details: dict[str, Any] | None = None,
    *,
    status_code: int | None = None,
    headers: dict[str, str] | None = None,
) -> Response[ErrorBody]:
    return Response(
        ErrorBody(error=ErrorDetail(code=code, message=message, details=details or {})),
        status_code=status_code or _STATUS[code],
        media_type=MediaType.JSON,
        headers=headers,
    )


def _api_error(_: Request[Any, Any, Any], exc: ApiError) -> Response[ErrorBody]:
    headers = dict(exc.headers)
    if exc.code is Code.SERVICE_UNAVAILABLE:
        headers.setdefault("Retry-After", "5")
    return _answer(exc.code, exc.message, exc.details, status_code=exc.status_code, headers=headers)


def _validation_error(_: Request[Any, Any, Any], exc: ValidationException) -> Response[ErrorBody]:
    details: dict[str, Any] = {}
    if isinstance(exc.extra, list) and exc.extra:
        details["errors"] = exc.extra
    return _answer(Code.VALIDATION_ERROR, exc.detail, details)


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    status = exc.status_code
    code = _CODE_OF_STATUS.get(status)
    if code is None:
        code = Code.INTERNAL_ERROR if status >= 500 else Code.VALIDATION_ERROR
    return _answer(code, exc.detail, status_code=status, headers=dict(exc.headers or {}))


def _platform_error(request: Request[Any, Any, Any], exc: PlatformError) -> Response[ErrorBody]:
    if isinstance(exc, RetryableError):
        log.warning("dependency unavailable", path=request.url.path, error=str(exc))
        return _answer(
            Code.SERVICE_UNAVAILABLE,
            "a service the gateway depends on is unavailable; try again later",
            headers={"Retry-After": "5"},
        )
    if isinstance(exc, TemplateError):
        return _answer(Code.TEMPLATE_SYNTAX_ERROR, str(exc))
    return _unexpected(request, exc)


def _undecodable(
    request: Request[Any, Any, Any], exc: RecursionError | UnicodeDecodeError
) -> Response[ErrorBody]:
    # msgspec's JSON decoder raises these for a body nested deeper than its limit
    # (``[[[[...``, a few KiB) and for a string that is not UTF-8; Litestar turns only its
    # DecodeError into a 400. Bad input, not our failure.
    if isinstance(exc, UnicodeDecodeError):
        return _answer(Code.VALIDATION_ERROR, "the body is not valid UTF-8")
    if "deserializing" in str(exc):
        return _answer(Code.VALIDATION_ERROR, "the JSON body is nested too deeply")
    return _unexpected(request, exc)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    log.error("unhandled error", path=request.url.path, exc_info=exc)
    return _answer(Code.INTERNAL_ERROR, "internal error")


def exception_handlers() -> ExceptionHandlersMap:
    return {
        ApiError: _api_error,
        ValidationException: _validation_error,
        HTTPException: _http_error,
        PlatformError: _platform_error,
        RecursionError: _undecodable,
        UnicodeDecodeError: _undecodable,
        Exception: _unexpected,
    }


def error_responses(
    *codes: Code, overrides: dict[Code, int] | None = None, authenticated: bool = True
) -> dict[int, ResponseSpec]:
    """OpenAPI responses for the codes a handler can answer with, grouped by HTTP status.

    ``authenticated`` (every ``/api/v1`` handler) adds what the API key check answers."""
    by_status: dict[int, list[str]] = {}
    checks = (Code.UNAUTHORIZED, Code.RATE_LIMITED) if authenticated else ()
    for code in (*codes, *checks, Code.SERVICE_UNAVAILABLE, Code.INTERNAL_ERROR):
        names = by_status.setdefault((overrides or {}).get(code, _STATUS[code]), [])
        if code not in names:
            names.append(code)
    return {
        status: ResponseSpec(
            data_container=ErrorBody,
            description=f"{HTTPStatus(status).phrase}: error code {' or '.join(names)}",
            generate_examples=False,
        )
        for status, names in sorted(by_status.items())
    }
