"""A service's life (STYLE rule 8): settings in, clients opened, workers run, drained.

Each service's ``__main__`` builds its workers from a ``Runtime`` and hands them to
``run_service``; SIGTERM or SIGINT stops every worker, which finishes what it holds. With
``OPS_PORT`` set, the ops endpoint (shared/ops_server.py) serves /metrics and the probes;
readiness turns false the moment draining starts, and the endpoint answers until the
workers are done.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from typing import Protocol

import structlog

from shared.broker import Broker, connect_broker
from shared.indexes import ensure_indexes
from shared.log import configure_logging
from shared.ops_server import serve_ops
from shared.settings import ServiceSettings
from shared.store import Store, connect_store
from shared.topology import ensure_topology

__all__ = ["Runtime", "Worker", "open_runtime", "run_service"]

log = structlog.get_logger("service")


class Worker(Protocol):
    async def run(self) -> None: ...

    def stop(self) -> None: ...


class Runtime:
    def __init__(self, name: str, broker: Broker, store: Store, exits: AsyncExitStack) -> None:
        self.name = name
        self.broker = broker
        self.store = store
        self.exits = exits


async def open_runtime(name: str, settings: ServiceSettings, exits: AsyncExitStack) -> Runtime:
    """Connect to NATS and the store (closed by ``exits``), with the topology and the
    indexes in place."""
    broker = await connect_broker(settings.nats_url, name)
    exits.push_async_callback(broker.close)
    await ensure_topology(broker.js, settings.nats_stream_replicas)
    store = await connect_store(settings.mongodb_uri, settings.mongodb_db)
    exits.push_async_callback(store.close)
    await ensure_indexes(store.db)
    return Runtime(name, broker, store, exits)


async def run_service(
    name: str,
    settings: ServiceSettings,
    build: Callable[[Runtime], Awaitable[Sequence[Worker]]],
) -> None:
    configure_logging(name, settings.log_format, settings.log_level)
    async with AsyncExitStack() as exits:
        runtime = await open_runtime(name, settings, exits)
        draining = asyncio.Event()
        if settings.ops_port is not None:
            # Up before the workers and down after they drain: scraped and probed throughout.
            await exits.enter_async_context(
                serve_ops(
                    name,
                    runtime.broker,
                    runtime.store,
                    settings.ops_host,
                    settings.ops_port,
                    draining=draining,
                )
            )
        workers = await build(runtime)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _stop_all, workers, sig, draining)
        log.info("started", workers=[type(w).__name__ for w in workers])
        async with asyncio.TaskGroup() as group:
            for worker in workers:
                group.create_task(worker.run())
        commands = runtime.store.commands
        log.info("stopped", store_commands=commands.count, store_commands_by=dict(commands.by_kind))


def _stop_all(workers: Sequence[Worker], sig: signal.Signals, draining: asyncio.Event) -> None:
    # Not ready first, then stop fetching: a probe never sees a draining process as ready.
    draining.set()
    log.info("draining", signal=sig.name)
    for worker in workers:
        worker.stop()
