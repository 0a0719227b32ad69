"""``python -m services.gateway``: settings, logging, then uvicorn serving the app."""

from __future__ import annotations

import uvicorn

from services.gateway.app import create_app
from shared.log import configure_logging
from shared.settings import GatewaySettings, load_settings


def main() -> None:
    settings = load_settings(GatewaySettings)
    configure_logging("gateway", settings.log_format, settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.gateway_host,
        port=settings.gateway_port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
    )


if __name__ == "__main__":
    main()
