"""A service's life (STYLE rule 8): settings in, clients opened, workers run, drained.

Each service's ``__main__`` builds its workers from a ``Runtime`` and hands them to
``run_service``; SIGTERM or SIGINT stops every worker, which finishes what it holds within
``SHUTDOWN_GRACE_SECONDS`` or lets it go (it comes back, as after a crash). With
``OPS_PORT`` set, the ops endpoint (shared/ops_server.py) serves /metrics and the probes;
readiness turns false the moment draining starts, and the endpoint answers until the
workers are done.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from typing import Protocol, TypeVar

import stamina
import structlog
from nats.errors import Error as NatsError
from nats.js.errors import APIError as JetStreamAPIError
from nats.js.errors import ServiceUnavailableError as JetStreamUnavailable
from pymongo.errors import ConnectionFailure

from shared.broker import DRAIN_SECONDS, Broker, connect_broker
from shared.errors import BrokerUnavailable
from shared.indexes import ensure_indexes
from shared.log import configure_logging
from shared.ops_server import serve_ops
from shared.settings import ServiceSettings
from shared.store import CLOSE_SECONDS, Store, connect_store
from shared.topology import ensure_topology

__all__ = [
    "CLOSING_SECONDS",
    "STARTUP_SECONDS",
    "Runtime",
    "Worker",
    "open_runtime",
    "run_service",
]

log = structlog.get_logger("service")

# After the workers: the most closing the connections takes when NATS or the store does
# not answer. A stop takes at most SHUTDOWN_GRACE_SECONDS plus this; an orchestrator's own
# grace before SIGKILL must cover both.
CLOSING_SECONDS = DRAIN_SECONDS + CLOSE_SECONDS

# How long a start-up waits for NATS and the store to answer: under the Deployments'
# startup probe window (deploy/k8s, 30 x 2 s), past which the kubelet restarts it anyway.
STARTUP_SECONDS = 50.0

T = TypeVar("T")


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
    indexes in place. A server that does not answer yet (restarting, or not up yet) is
    waited for, up to ``STARTUP_SECONDS``: a brief outage costs a start-up some seconds, not
    a crash for a supervisor to restart with its back-off (or, with none, for good)."""
    broker = await _once_up(lambda: connect_broker(settings.nats_url, name))
    exits.push_async_callback(broker.close)
    await _once_up(lambda: ensure_topology(broker.js, settings.nats_stream_replicas))
    store = await _once_up(lambda: connect_store(settings.mongodb_uri, settings.mongodb_db))
    exits.push_async_callback(store.close)
    await _once_up(lambda: ensure_indexes(store.db))
    return Runtime(name, broker, store, exits)


async def _once_up(step: Callable[[], Awaitable[T]]) -> T:
    async for attempt in stamina.retry_context(
        on=_not_up_yet, attempts=None, timeout=STARTUP_SECONDS, wait_max=2.0
    ):
        with attempt:
            done = await step()
    return done


def _not_up_yet(error: Exception) -> bool:
    """A server not answering (yet): ask again. What it answers (a configuration refused)
    fails the start-up at once."""
    if isinstance(error, JetStreamAPIError):
        return isinstance(error, JetStreamUnavailable)
    return isinstance(error, BrokerUnavailable | NatsError | ConnectionFailure | OSError)


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
        grace = settings.shutdown_grace_seconds
        async with asyncio.TaskGroup() as group:
            runs = [group.create_task(worker.run()) for worker in workers]
            cutoff = asyncio.create_task(_let_go_after(draining, grace, runs))
            exits.callback(cutoff.cancel)
        commands = runtime.store.commands
        log.info("stopped", store_commands=commands.count, store_commands_by=dict(commands.by_kind))


async def _let_go_after(
    draining: asyncio.Event, grace: float, runs: Sequence[asyncio.Task[None]]
) -> None:
    """Once draining, give the workers ``grace`` seconds; then cancel what still runs.

    A handling cut off is handed back unacknowledged (shared/actor.py): JetStream delivers
    it again, to another replica, as after a crash, and every handler is safe to repeat (a
    sender's claimed messages are settled by their lease). Cancelled again each second: a
    client may await once more while unwinding (a store transaction's abort).
    """
    await draining.wait()
    _, late = await asyncio.wait(runs, timeout=grace)
    if late:
        log.warning("grace period over; letting go of what is in hand", seconds=grace)
    while late:
        for run in late:
            run.cancel()
        _, late = await asyncio.wait(late, timeout=1.0)


def _stop_all(workers: Sequence[Worker], sig: signal.Signals, draining: asyncio.Event) -> None:
    # Not ready first, then stop fetching: a probe never sees a draining process as ready.
    draining.set()
    log.info("draining", signal=sig.name)
    for worker in workers:
        worker.stop()
    # Stopping already, within a bounded grace: a later SIGTERM (a second stop, one sent to
    # the whole process group) must not kill it on its way out, when the closing loop would
    # have put the default action back.
    asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
