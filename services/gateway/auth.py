"""Who is calling: the API key of every ``/api/v1`` request, and its rate.

(All but the SNS webhook's, ``services.gateway.webhooks``: SNS cannot send a key, it signs.)

``Authorization: Bearer <api key>`` is looked up by its hash (one read by ``_id``, or none
while the key is in services/gateway/key_cache.py); a
missing, malformed, unknown or revoked key is ``401 UNAUTHORIZED``, and a key over its rate
``429 RATE_LIMITED`` with ``Retry-After``. The key found goes into ``scope["auth"]``, where
``tenant`` finds it; the tenant and the key's public id are bound to every log line of the
request. The key itself is never logged nor echoed back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, cast

import structlog
from litestar.datastructures import Headers
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware

from services.gateway.errors import ApiError, Code
from services.gateway.throttle import TokenBuckets
from shared.api_keys import KEY_PREFIX

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Receive, Scope, Send

    from services.gateway.deps import GatewayDeps
    from shared.settings import GatewaySettings

__all__ = ["SECURITY_SCHEME", "ApiKeyAuth"]

# The OpenAPI name of the scheme.
SECURITY_SCHEME: Final = "BearerAuth"
# Longer than any key we make; a longer header is not worth a lookup.
_MAX_KEY_CHARS: Final = 128
_CHALLENGE: Final = {"WWW-Authenticate": 'Bearer realm="api"'}


def _unauthorized(message: str) -> ApiError:
    return ApiError(Code.UNAUTHORIZED, message, headers=_CHALLENGE)


def _bearer(header: str | None) -> str:
    if header is None:
        raise _unauthorized("this endpoint needs an API key: 'Authorization: Bearer <api key>'")
    scheme, _, key = header.strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key or " " in key:
        raise _unauthorized("malformed Authorization header: expected 'Bearer <api key>'")
    return key


class ApiKeyAuth(ASGIMiddleware):
    """One instance per app: its token buckets are the one piece of shared state."""

    scopes = (ScopeType.HTTP,)

    def __init__(self, settings: GatewaySettings) -> None:
        self.buckets = TokenBuckets(settings.api_rate_per_second, settings.api_rate_burst)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        key = _bearer(Headers.from_scope(scope).get("authorization"))
        found = None
        if key.startswith(KEY_PREFIX) and len(key) <= _MAX_KEY_CHARS:
            deps = cast("GatewayDeps", scope["litestar_app"].state.deps)
            found = await deps.api_keys.find(key)
        if found is None:
            raise _unauthorized("unknown or revoked API key")
        wait = self.buckets.take(found.key_id)
        if wait:
            raise ApiError(
                Code.RATE_LIMITED,
                f"over this key's rate of {self.buckets.rate:g} requests/s; retry in {wait} s",
                details={"retry_after_seconds": wait},
                headers={"Retry-After": str(wait)},
            )
        scope["auth"] = found
        with structlog.contextvars.bound_contextvars(tenant=found.tenant, api_key_id=found.key_id):
            await next_app(scope, receive, send)
