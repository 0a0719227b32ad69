"""The API's errors: every code in one place, and the one shape every error answers with.

    {"error": {"code": "TEMPLATE_NOT_FOUND", "message": "...", "details": {...}}}

Handlers raise ``ApiError(Code.X, message, details=...)``; the exception handlers below turn
it — and Litestar's own exceptions (validation, unknown route, wrong method, body too large),
our ``RetryableError`` tree (503) and anything unexpected (500) — into that shape.
"""

from __future__ import annotations

from enum import StrEnum
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final

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
    "ApiError",
    "Code",
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
    INVALID_FORM = "INVALID_FORM"
    MISSING_FILE = "MISSING_FILE"
    EMPTY_FILE = "EMPTY_FILE"
    FILE_TOO_LARGE = "FILE_TOO_LARGE"
    INVALID_CALLBACK_URL = "INVALID_CALLBACK_URL"
    INVALID_SEND_AT = "INVALID_SEND_AT"
    INVALID_METADATA = "INVALID_METADATA"
    SOURCE_NOT_FOUND = "SOURCE_NOT_FOUND"
    SOURCE_NOT_ALLOWED = "SOURCE_NOT_ALLOWED"
    INVALID_IDEMPOTENCY_KEY = "INVALID_IDEMPOTENCY_KEY"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    IDEMPOTENCY_KEY_IN_USE = "IDEMPOTENCY_KEY_IN_USE"
    INVALID_CURSOR = "INVALID_CURSOR"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    INTERNAL_ERROR = "INTERNAL_ERROR"


# The HTTP status of each code: one decision, one place.
_STATUS: Final[dict[Code, int]] = {
    Code.VALIDATION_ERROR: 400,
    # No usable API key: none, malformed, unknown or revoked (one answer for all four).
    Code.UNAUTHORIZED: 401,
    # A valid key that may not do this (an admin endpoint, a non-admin key).
    Code.FORBIDDEN: 403,
    # Over the key's request rate; Retry-After says when to come back.
    Code.RATE_LIMITED: 429,
    Code.NOT_FOUND: 404,
    Code.METHOD_NOT_ALLOWED: 405,
    Code.UNSUPPORTED_MEDIA_TYPE: 415,
    Code.PAYLOAD_TOO_LARGE: 413,
    Code.TEMPLATE_SYNTAX_ERROR: 400,
    # A bad field of the request, not a missing resource at the request's URL.
    Code.TEMPLATE_NOT_FOUND: 400,
    Code.TRANSACTION_NOT_FOUND: 404,
    Code.KEY_NOT_FOUND: 404,
    Code.INVALID_FORM: 400,
    Code.MISSING_FILE: 400,
    Code.EMPTY_FILE: 400,
    Code.FILE_TOO_LARGE: 413,
    Code.INVALID_CALLBACK_URL: 400,
    Code.INVALID_SEND_AT: 400,
    Code.INVALID_METADATA: 400,
    # source.s3_uri: no such object; an object outside the tenant's prefix of our bucket.
    Code.SOURCE_NOT_FOUND: 400,
    Code.SOURCE_NOT_ALLOWED: 400,
    Code.INVALID_IDEMPOTENCY_KEY: 400,
    # The key was used with a different request (fields or file).
    Code.IDEMPOTENCY_KEY_REUSED: 409,
    # The key's first request is still being processed; Retry-After says when to try again.
    Code.IDEMPOTENCY_KEY_IN_USE: 409,
    Code.INVALID_CURSOR: 400,
    Code.SERVICE_UNAVAILABLE: 503,
    Code.INTERNAL_ERROR: 500,
}

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
    code: Code
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


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    log.error("unhandled error", path=request.url.path, exc_info=exc)
    return _answer(Code.INTERNAL_ERROR, "internal error")


def exception_handlers() -> ExceptionHandlersMap:
    return {
        ApiError: _api_error,
        ValidationException: _validation_error,
        HTTPException: _http_error,
        PlatformError: _platform_error,
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
