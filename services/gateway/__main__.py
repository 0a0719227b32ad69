"""``python -m services.gateway``: settings, logging, then uvicorn serving the app."""

from __future__ import annotations

import math
import signal

import uvicorn

from services.gateway.app import create_app
from shared.log import configure_logging
from shared.settings import GatewaySettings, load_settings


def main() -> None:
    settings = load_settings(GatewaySettings)
    configure_logging("gateway", settings.log_format, settings.log_level)
    # On SIGTERM uvicorn stops accepting, lets open requests finish (those still open
    # after the grace period are cut off, event streams among them), closes the clients,
    # then raises the signal again for the handler it found: this one, so a stop that was
    # asked for and done ends with status 0, as the other services' do.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: None)
    uvicorn.run(
        create_app(settings),
        host=settings.gateway_host,
        port=settings.gateway_port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_seconds),
    )


if __name__ == "__main__":
    main()
