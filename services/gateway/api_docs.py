"""The OpenAPI document and its UI, Swagger UI, with every asset served by us.

Litestar's render plugins load their JavaScript, CSS, favicon and fonts from CDNs by
default, and a page whose scripts do not load stays blank: on a machine without internet
(this one, many production networks) ``/schema`` would show nothing. So the plugin is
pointed at ``ASSETS_PATH``, a static route over the Swagger UI 5 distribution that the
``swagger-ui-py`` package ships (its own code, handlers for other frameworks, is not used:
the files are found with ``find_spec``).

``swagger-ui-bundle``, the obvious candidate, carries Swagger UI 4.15, which refuses
OpenAPI 3.1 ("does not specify a valid version field"): Litestar writes 3.1.0.
``drf-spectacular-sidecar`` ships the same files but installs Django.

ReDoc is not offered: its page loads its logo from its CDN whatever it is told.

``/schema`` (and ``/schema/swagger``) is Swagger UI, ``/schema/openapi.json`` the document
itself (Litestar adds it).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Final

from litestar import Router
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components
from litestar.static_files import create_static_files_router

__all__ = ["ASSETS_PATH", "SCHEMA_PATH", "api_docs_assets", "openapi_config"]

SCHEMA_PATH: Final = "/schema"
ASSETS_PATH: Final = "/static/swagger-ui"
_PACKAGE: Final = "swagger_ui"


def _assets_directory() -> Path:
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the {_PACKAGE} package (the API docs' assets) is not installed")
    return Path(spec.submodule_search_locations[0]) / "static"


def api_docs_assets() -> Router:
    """The static route Swagger UI loads its files from."""
    return create_static_files_router(
        path=ASSETS_PATH, directories=[_assets_directory()], name="api-docs-assets"
    )


def openapi_config(
    *, title: str, version: str, description: str, components: Components
) -> OpenAPIConfig:
    favicon = f"<link rel='icon' type='image/png' href='{ASSETS_PATH}/favicon-32x32.png'>"
    return OpenAPIConfig(
        title=title,
        version=version,
        description=description,
        path=SCHEMA_PATH,
        components=components,
        render_plugins=[
            SwaggerRenderPlugin(
                js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
                css_url=f"{ASSETS_PATH}/swagger-ui.css",
                standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
                path=["/", "/swagger"],
                favicon=favicon,
            ),
        ],
    )
