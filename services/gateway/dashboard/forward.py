"""The dashboard's way into the API: the same requests, authorised by the session's key.

The browser never holds the API key: the session cookie carries it, encrypted, and a request
the dashboard makes on the caller's behalf is handed to the gateway's own ``/api/v1``
routes, in process, with ``Authorization: Bearer <the session's key>``. So the API's key
check, rate, tenant scoping and error answers apply unchanged, and the dashboard has no
second implementation of any endpoint.

- ``forward_api`` (``/dashboard/api/<path>`` -> ``/api/v1/<path>``): the page's scripts and
  links (the submission form, a CSV export); the body and the answer stream through.
  Unsafe methods pass the dashboard's CSRF check first (``session``).
- ``call_api``: a server-rendered page asks an endpoint and renders its JSON answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, cast
from urllib.parse import unquote

import msgspec
from litestar import asgi
from litestar.exceptions import NotFoundException
from litestar.types.asgi_types import HTTPDisconnectEvent, HTTPRequestEvent

from services.gateway.dashboard.session import DASHBOARD_PATH, viewer_from_scope
from services.gateway.errors import ApiError, Code

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.types import HTTPReceiveMessage, HTTPScope, Message, Receive, Scope, Send

__all__ = ["API_PATH", "PROXY_PATH", "ApiAnswer", "call_api", "forward_api"]

API_PATH: Final = "/api/v1"
# Under the dashboard's router (``/dashboard``).
PROXY_PATH: Final = "/api"
# Not forwarded: what only a browser sends to us, and what we set ourselves.
_DROPPED: Final = frozenset({b"authorization", b"cookie"})
# Not forwarded either by ``call_api``, which sends no body of the page's request.
_BODY_HEADERS: Final = frozenset({b"content-type", b"content-length", b"transfer-encoding"})


class ApiAnswer(msgspec.Struct, frozen=True, kw_only=True):
    status_code: int
    # The decoded JSON body; None when there was none or it was not JSON.
    body: Any


def _api_scope(
    scope: Scope, *, key: str, method: str, path: str, query: bytes, with_body: bool
) -> HTTPScope:
    """A fresh request scope for ``path`` under ``API_PATH``, carrying ``key``: only the
    ASGI fields, so that nothing Litestar cached for the outer request leaks in."""
    outer = cast("HTTPScope", scope)
    dropped = _DROPPED if with_body else _DROPPED | _BODY_HEADERS
    headers = [(name, value) for name, value in outer["headers"] if name not in dropped]
    headers.append((b"authorization", f"Bearer {key}".encode()))
    full = API_PATH + path
    inner: dict[str, Any] = {
        "type": "http",
        "asgi": outer.get("asgi") or {"version": "3.0"},
        "http_version": outer.get("http_version") or "1.1",
        "method": method,
        "scheme": outer.get("scheme") or "http",
        "server": outer.get("server"),
        "client": outer.get("client"),
        "root_path": outer.get("root_path", ""),
        "path": full,
        "raw_path": full.encode(),
        "query_string": query,
        "headers": headers,
        "extensions": outer.get("extensions") or {},
    }
    return cast("HTTPScope", inner)


def _app(scope: Scope) -> Litestar:
    return scope["litestar_app"]


def _forwarded_path(scope: Scope, mount: str) -> str | None:
    """What follows ``mount`` in the request's path, as sent; None if it climbs out."""
    raw = scope.get("raw_path") or scope["path"].encode()
    path = unquote(raw.decode("latin-1"))
    rest = path[len(mount) :] if path.startswith(mount) else ""
    if not rest.startswith("/") or ".." in rest.split("/"):
        return None
    return rest


@asgi(PROXY_PATH, is_mount=True, copy_scope=True)
async def forward_api(scope: Scope, receive: Receive, send: Send) -> None:
    """``/dashboard/api/<path>`` is ``/api/v1/<path>`` with the session's key."""
    viewer = await viewer_from_scope(scope)
    if viewer is None:
        raise ApiError(Code.UNAUTHORIZED, "log in to the dashboard first: /dashboard/login")
    path = _forwarded_path(scope, DASHBOARD_PATH + PROXY_PATH)
    if path is None:
        raise NotFoundException("no such path")
    http = cast("HTTPScope", scope)
    inner = _api_scope(
        http,
        key=viewer.key,
        method=http["method"],
        path=path,
        query=http["query_string"],
        with_body=True,
    )
    await _app(scope)(inner, receive, send)


async def call_api(scope: Scope, key: str, method: str, path: str, query: bytes = b"") -> ApiAnswer:
    """Ask the API in process, as the holder of ``key``, with no body; its JSON answer."""
    inner = _api_scope(scope, key=key, method=method, path=path, query=query, with_body=False)
    status = 500
    chunks: list[bytes] = []
    sent = False

    async def receive() -> HTTPReceiveMessage:
        nonlocal sent
        if sent:
            return HTTPDisconnectEvent(type="http.disconnect")
        sent = True
        return HTTPRequestEvent(type="http.request", body=b"", more_body=False)

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await _app(scope)(inner, receive, send)
    body = b"".join(chunks)
    try:
        decoded = msgspec.json.decode(body) if body else None
    except msgspec.DecodeError:
        decoded = None
    return ApiAnswer(status_code=status, body=decoded)
