"""The operators' dashboard at ``/dashboard`` (ARCHITECTURE §2: the gateway serves it).

``dashboard_router`` is the pages (``pages``), the way into the API for their scripts
(``forward``) and, around both, the session and CSRF middleware (``session``);
``dashboard_assets`` serves the script and the style sheet, ``TEMPLATE_CONFIG`` the Jinja2
templates. None of it is under ``/api/v1``, so the API's key check does not see it, and
none of it is in the OpenAPI document.

Every response of a page carries a Content-Security-Policy allowing nothing but this
origin: a page that tried to load anything from elsewhere would break in the browser test,
not only offline.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from litestar import Router
from litestar.datastructures import ResponseHeader
from litestar.di import Provide
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template import TemplateConfig

from services.gateway.dashboard.forward import forward_api
from services.gateway.dashboard.pages import DashboardController, provide_viewer, to_login
from services.gateway.dashboard.session import (
    DASHBOARD_PATH,
    LoginRequired,
    csrf_middleware,
    session_middleware,
)
from shared.settings import GatewaySettings

__all__ = [
    "ASSETS_PATH",
    "DASHBOARD_PATH",
    "TEMPLATE_CONFIG",
    "dashboard_assets",
    "dashboard_router",
]

_HERE: Final = Path(__file__).resolve().parent
ASSETS_PATH: Final = f"{DASHBOARD_PATH}/static"
_POLICY: Final = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def _when(value: datetime | str | None) -> str:
    """A time as people read it: UTC, to the second. Text is an API answer's RFC 3339."""
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            return value
    else:
        at = value
    if at.tzinfo is not None:
        at = at.astimezone(UTC)
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _add_filters(engine: JinjaTemplateEngine) -> None:
    engine.engine.filters.update(when=_when, duration=_duration)
    engine.engine.globals.update(assets=ASSETS_PATH, base=DASHBOARD_PATH)


TEMPLATE_CONFIG: Final = TemplateConfig(
    directory=_HERE / "templates", engine=JinjaTemplateEngine, engine_callback=_add_filters
)


def dashboard_router(settings: GatewaySettings) -> Router:
    return Router(
        path=DASHBOARD_PATH,
        route_handlers=[DashboardController, forward_api],
        middleware=[session_middleware(settings), csrf_middleware(settings)],
        dependencies={"viewer": Provide(provide_viewer)},
        exception_handlers={LoginRequired: to_login},
        response_headers=[
            ResponseHeader(name="Content-Security-Policy", value=_POLICY),
            ResponseHeader(name="Cache-Control", value="no-store"),
            ResponseHeader(name="Referrer-Policy", value="same-origin"),
        ],
        include_in_schema=False,
    )


def dashboard_assets() -> Router:
    return create_static_files_router(
        path=ASSETS_PATH, directories=[_HERE / "static"], name="dashboard-assets"
    )
