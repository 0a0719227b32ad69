"""An actor keeps working across a restart of nats-server: it neither crashes nor stops.

The test runs a NATS of its own (the launcher starts only NATS when the store and AWS are
given), restarts it mid-run, and checks that work published after the restart is done.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import msgspec
import pytest
from nats.js.api import RetentionPolicy, StorageType, StreamConfig

from shared.actor import Actor, ActorRunner
from shared.broker import connect_broker
from shared.errors import BrokerUnavailable
from shared.store import connect_store
from shared.topology import ConsumerSpec
from stack.launcher import Stack, StackInfo
from tests.conftest import drop_database


class Ping(msgspec.Struct, frozen=True, kw_only=True):
    n: int


class Recorder(Actor[Ping]):
    event_type = Ping

    def __init__(self, spec: ConsumerSpec) -> None:
        self.spec = spec
        self.seen: list[int] = []

    async def handle(self, event: Ping) -> None:
        self.seen.append(event.n)


@pytest.fixture
def own_nats(tmp_path: Path, stack_info: StackInfo) -> Iterator[Stack]:
    given = {"MONGODB_URI": stack_info.mongodb_uri}
    if stack_info.aws_endpoint_url:
        given["AWS_ENDPOINT_URL"] = stack_info.aws_endpoint_url
    stack = Stack(tmp_path / "nats-only", environ=given)
    stack.start()
    yield stack
    stack.stop()


async def test_work_after_a_nats_restart_is_done(own_nats: Stack, db_name: str) -> None:
    assert own_nats.info is not None
    name = uuid.uuid4().hex[:8]
    spec = ConsumerSpec(
        stream=f"RESTART_{name}", durable="d", filter_subject=f"restart.{name}", service="t"
    )
    async with AsyncExitStack() as exits:
        broker = await connect_broker(own_nats.info.nats_url, "restart-test")
        exits.push_async_callback(broker.close)
        store = await connect_store(own_nats.info.mongodb_uri, db_name)
        exits.push_async_callback(store.close)
        await broker.js.add_stream(
            StreamConfig(
                name=spec.stream,
                subjects=[spec.filter_subject],
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
            )
        )
        await broker.js.add_consumer(spec.stream, spec.config())
        actor = Recorder(spec)
        runner = ActorRunner(actor, broker, store, concurrency=2, fetch_timeout=0.2)
        running = asyncio.create_task(runner.run())

        await broker.publish(spec.filter_subject, Ping(n=1), msg_id="1")
        nats = own_nats.processes.pid("nats")
        argv = own_nats.processes.argv("nats")
        own_nats.processes.stop("nats")
        await asyncio.sleep(1.0)  # the runner's fetches fail meanwhile
        assert not running.done()
        own_nats.processes.start("nats", argv, cwd=own_nats.root)
        assert own_nats.processes.pid("nats") != nats

        for _ in range(100):  # the client reconnects on its own; publish once it has
            try:
                await broker.publish(spec.filter_subject, Ping(n=2), msg_id="2")
                break
            except BrokerUnavailable:
                await asyncio.sleep(0.1)
        for _ in range(100):
            if actor.seen == [1, 2]:
                break
            await asyncio.sleep(0.1)

        assert actor.seen == [1, 2]
        assert not running.done()
        runner.stop()
        async with asyncio.timeout(10):
            await running
        await drop_database(store.client, db_name)
