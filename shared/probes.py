"""Readiness, one definition for every service: NATS connected and the store answering.

The gateway's ``/health/ready`` (services/gateway/health.py) and the worker services' ops
endpoint (shared/ops_server.py) both answer from ``readiness_checks``.
"""

from __future__ import annotations

import asyncio
from typing import Final

from pymongo.errors import PyMongoError

from shared.broker import Broker
from shared.store import Store

__all__ = ["ping_store", "readiness_checks"]

_PING_TIMEOUT: Final = 2.0


async def ping_store(store: Store) -> bool:
    try:
        async with asyncio.timeout(_PING_TIMEOUT):
            await store.client.admin.command("ping")
    except (PyMongoError, TimeoutError):
        return False
    return True


async def readiness_checks(broker: Broker, store: Store) -> dict[str, bool]:
    """Each dependency by name, True when it answers; ready when all are."""
    return {"nats": broker.nc.is_connected, "store": await ping_store(store)}
