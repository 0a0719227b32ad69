"""The ops endpoint of a worker service (ingest, scheduler, sender, tracker), on
``OPS_HOST:OPS_PORT``:

    GET /metrics        prometheus-client's exposition of the process's metrics
                        (shared/metrics.py), with its JetStream consumers' lag read just now
    GET /health/live    200 while the process answers
    GET /health/ready   200 when NATS is connected and the store answers, else 503; 503 as
                        soon as the service starts draining (SIGTERM), before its work stops

The gateway serves the same three on its own port (services/gateway/health.py).

aiohttp rather than uvicorn: uvicorn's server installs its own SIGTERM and SIGINT handlers,
and those signals belong to the service (shared/service.py drains its workers on them).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import msgspec
import structlog
from aiohttp import web
from nats.errors import Error as NatsError
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from shared.broker import Broker
from shared.metrics import CONSUMER_ACK_PENDING, CONSUMER_PENDING
from shared.probes import readiness_checks
from shared.store import Store
from shared.topology import ConsumerSpec, all_consumers

__all__ = ["serve_ops", "update_consumer_lag"]

log = structlog.get_logger("ops")

# A scrape must answer even when NATS does not: past this the lag gauges keep their values.
_LAG_TIMEOUT: Final = 2.0


class _Readiness(msgspec.Struct, frozen=True, kw_only=True):
    status: str
    checks: dict[str, bool]


async def update_consumer_lag(broker: Broker, service: str) -> None:
    """Set the lag gauges of ``service``'s durable consumers from the server's consumer info.

    Every replica of a service reads the same consumers, so each reports the same numbers:
    dashboards and rules aggregate them with ``max by (consumer)``.
    """
    specs = [spec for spec in all_consumers() if spec.service == service]
    await asyncio.gather(*(_read_lag(broker, spec) for spec in specs))


async def _read_lag(broker: Broker, spec: ConsumerSpec) -> None:
    try:
        info = await broker.js.consumer_info(spec.stream, spec.durable, timeout=_LAG_TIMEOUT)
    except (NatsError, TimeoutError) as e:
        log.warning("consumer lag unread", consumer=spec.durable, error=repr(e))
        return
    CONSUMER_PENDING.labels(spec.durable).set(info.num_pending or 0)
    CONSUMER_ACK_PENDING.labels(spec.durable).set(info.num_ack_pending or 0)


def _app(
    service: str, broker: Broker, store: Store, draining: asyncio.Event | None
) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        await update_consumer_lag(broker, service)
        return web.Response(
            body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def live(_: web.Request) -> web.Response:
        return web.Response(body=b'{"status":"ok"}', content_type="application/json")

    async def ready(_: web.Request) -> web.Response:
        checks = await readiness_checks(broker, store)
        if draining is not None:
            # A draining process takes no new work: out of the load balancer first.
            checks["not_draining"] = not draining.is_set()
        ok = all(checks.values())
        body = _Readiness(status="ready" if ok else "not ready", checks=checks)
        return web.Response(
            body=msgspec.json.encode(body),
            status=200 if ok else 503,
            content_type="application/json",
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health/live", live)
    app.router.add_get("/health/ready", ready)
    return app


@asynccontextmanager
async def serve_ops(
    service: str,
    broker: Broker,
    store: Store,
    host: str,
    port: int,
    *,
    draining: asyncio.Event | None = None,
) -> AsyncIterator[int]:
    """Serve the ops endpoint while the context is open; yields the port it listens on
    (the one chosen when ``port`` is 0). Once ``draining`` is set, readiness answers 503."""
    runner = web.AppRunner(
        _app(service, broker, store, draining), access_log=None, handle_signals=False
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = int(runner.addresses[0][1])
        log.info("ops endpoint", host=host, port=bound)
        yield bound
    finally:
        await runner.cleanup()
