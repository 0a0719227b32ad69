"""The API's JSON bodies: ``application/json``, of exactly the declared types, or refused.

Litestar decodes a handler's ``data`` as JSON whatever the request's ``Content-Type`` says
(a ``text/plain`` or a form body that happens to parse is taken), and converts it leniently
(``"marketing": 0`` becomes false, ``"admin": "true"`` true). ``require_json``, a guard of
the keyed router, runs before that for every handler with a JSON ``data``: a body of another
type is 415 ``UNSUPPORTED_MEDIA_TYPE``, and a body that does not decode strictly into the
declared type is 400 ``VALIDATION_ERROR`` (the body is read once: Litestar keeps it for the
handler). A request without a body (``data`` optional) passes. Handlers that read the raw
stream (a submission, which takes a form too) check the type themselves.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.enums import RequestEncodingType
from litestar.handlers.base import BaseRouteHandler
from litestar.params import BodyKwarg

from services.gateway.errors import ApiError, Code

__all__ = ["require_json"]

_JSON: Final = "application/json"


def _has_body(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    headers = connection.headers
    if "transfer-encoding" in headers:
        return True
    length = headers.get("content-length", "0").strip()
    return not (length.isdigit() and int(length) == 0)


def _is_json(content_type: str) -> bool:
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type == _JSON or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


async def require_json(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    data = handler.parsed_fn_signature.parameters.get("data")
    if data is None or not _has_body(connection) or not isinstance(connection, Request):
        return
    kwarg = data.kwarg_definition
    if isinstance(kwarg, BodyKwarg) and kwarg.media_type != RequestEncodingType.JSON:
        return
    content_type = connection.headers.get("content-type") or ""
    if not _is_json(content_type):
        raise ApiError(
            Code.UNSUPPORTED_MEDIA_TYPE,
            f"the body must be {_JSON}",
            details={"content_type": content_type},
        )
    try:
        msgspec.json.decode(await connection.body(), type=data.annotation, strict=True)
    except msgspec.ValidationError as e:
        raise ApiError(Code.VALIDATION_ERROR, f"invalid body: {e}") from e
    except msgspec.DecodeError as e:
        raise ApiError(Code.VALIDATION_ERROR, f"malformed JSON: {e}") from e
