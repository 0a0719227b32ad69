"""Who is looking at the dashboard: an API key, kept in an encrypted session cookie.

A person logs in with an API key. The key goes into Litestar's client-side session: a
cookie encrypted and authenticated with AES-GCM (``CookieBackendConfig``), ``HttpOnly`` (no
script reads it), ``SameSite=Strict`` (no other site's page sends it), ``Path=/dashboard``
and ``Secure`` whenever the gateway's public URL is https. Nothing is kept on the server,
so any gateway replica serves any session. Every dashboard request looks the key up as the
API does (``find_active_key``): a key revoked since the login ends the session at once.

Unsafe requests (the login and logout forms, a dead letter's buttons, the scripts' POSTs)
also carry a CSRF token, Litestar's ``CSRFMiddleware``: a signed token in its own
``HttpOnly``, ``SameSite=Strict`` cookie that the form (field ``_csrf_token``) or the
script (header ``x-csrftoken``, read from the page's ``<meta name="csrf-token">``) must
repeat.

Both keys are derived from ``UNSUBSCRIBE_SECRET``, the one secret every gateway replica
already shares (HKDF-SHA256, one purpose label each): no new secret to manage, and one that
is not the unsubscribe links' own key. Changing it logs everyone out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, cast

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from litestar.config.csrf import CSRFConfig
from litestar.middleware import DefineMiddleware
from litestar.middleware.csrf import CSRFMiddleware
from litestar.middleware.session import SessionMiddleware
from litestar.middleware.session.client_side import ClientSideSessionBackend, CookieBackendConfig

from shared.api_keys import KEY_PREFIX, ApiKey, find_active_key
from shared.settings import require_unsubscribe_secret

if TYPE_CHECKING:
    from litestar import Request
    from litestar.types import ASGIApp, Scope

    from services.gateway.deps import GatewayDeps
    from shared.settings import GatewaySettings

__all__ = [
    "CSRF_HEADER",
    "DASHBOARD_PATH",
    "SESSION_KEY",
    "LoginRequired",
    "Viewer",
    "csrf_middleware",
    "log_in",
    "log_out",
    "session_middleware",
    "viewer_from_scope",
]

DASHBOARD_PATH: Final = "/dashboard"
SESSION_COOKIE: Final = "dashboard_session"
CSRF_COOKIE: Final = "dashboard_csrf"
CSRF_HEADER: Final = "x-csrftoken"
# Where the key is in the session.
SESSION_KEY: Final = "api_key"
# A working day; every answer sets the cookie again, so it is a day since the last request.
_SESSION_SECONDS: Final = 12 * 3600
# Longer than any key we make (``services.gateway.auth`` has the same bound).
_MAX_KEY_CHARS: Final = 128


class LoginRequired(Exception):
    """No session, or its key is no longer valid: the page sends the person to log in."""


@dataclass(frozen=True, slots=True)
class Viewer:
    """The logged-in key: the key itself (to call the API with) and what is stored of it."""

    key: str
    stored: ApiKey

    @property
    def tenant(self) -> str:
        return self.stored.tenant


def _derive(settings: GatewaySettings, purpose: str) -> bytes:
    secret = require_unsubscribe_secret(settings).encode()
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode())
    return hkdf.derive(secret)


def _secure(settings: GatewaySettings) -> bool:
    return (settings.public_base_url or "").startswith("https://")


class _SessionMiddleware(SessionMiddleware[ClientSideSessionBackend]):
    """Litestar's session middleware, its backend made from the config when the app is
    built: Litestar deep-copies a router, and a backend (its AES-GCM key object) cannot be
    copied."""

    def __init__(self, app: ASGIApp, config: CookieBackendConfig) -> None:
        super().__init__(app, ClientSideSessionBackend(config))


def session_middleware(settings: GatewaySettings) -> DefineMiddleware:
    config = CookieBackendConfig(
        secret=_derive(settings, "email-platform dashboard session"),
        key=SESSION_COOKIE,
        max_age=_SESSION_SECONDS,
        path=DASHBOARD_PATH,
        secure=_secure(settings),
        httponly=True,
        samesite="strict",
    )
    return DefineMiddleware(_SessionMiddleware, config=config)


def csrf_middleware(settings: GatewaySettings) -> DefineMiddleware:
    config = CSRFConfig(
        secret=_derive(settings, "email-platform dashboard csrf").hex(),
        cookie_name=CSRF_COOKIE,
        cookie_path=DASHBOARD_PATH,
        cookie_secure=_secure(settings),
        cookie_httponly=True,
        cookie_samesite="strict",
        header_name=CSRF_HEADER,
    )
    return DefineMiddleware(CSRFMiddleware, config=config)


async def _lookup(deps: GatewayDeps, key: object) -> ApiKey | None:
    if not isinstance(key, str) or not key.startswith(KEY_PREFIX) or len(key) > _MAX_KEY_CHARS:
        return None
    return await find_active_key(deps.store, key)


async def viewer_from_scope(scope: Scope) -> Viewer | None:
    """The session's key, if it is still an active one."""
    session = scope.get("session")
    if not isinstance(session, dict):
        return None
    key = session.get(SESSION_KEY)
    deps = cast("GatewayDeps", scope["litestar_app"].state.deps)
    found = await _lookup(deps, key)
    if found is None:
        return None
    return Viewer(key=cast("str", key), stored=found)


async def log_in(request: Request[Any, Any, Any], deps: GatewayDeps, key: str) -> Viewer | None:
    """Start a session for ``key`` if it is an active key; None (and no session) if not."""
    key = key.strip()
    found = await _lookup(deps, key)
    if found is None:
        request.clear_session()
        return None
    request.set_session({SESSION_KEY: key})
    return Viewer(key=key, stored=found)


def log_out(request: Request[Any, Any, Any]) -> None:
    request.clear_session()
