"""Schedules survive a restart: with the scheduler and nats-server both down while a slot's
time passes, the slot fires once when they are back, late, and the lateness is recorded.

The test runs a nats-server of its own (the session's is shared by every test) on the
session's store, and the scheduler's actors in this process, stopped and started as the
service would be.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from services.scheduler.scheduling import DueActor, IngestedActor
from shared.actor import ActorRunner
from shared.broker import Broker, connect_broker
from shared.documents import Slot, from_document
from shared.events import TxIngested
from shared.records import load_transaction
from shared.status import TxStatus
from shared.store import Store, connect_store
from shared.topology import Subjects, ensure_topology
from stack.launcher import Stack, StackInfo
from tests.conftest import drop_database
from tests.scheduler.scheduler_builders import (
    schedule_messages,
    seed_transaction,
    send_batches,
    soon,
    statuses,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def own_nats(tmp_path: Path, stack_info: StackInfo) -> Iterator[Stack]:
    given = {"MONGODB_URI": stack_info.mongodb_uri}
    if stack_info.aws_endpoint_url:
        given["AWS_ENDPOINT_URL"] = stack_info.aws_endpoint_url
    stack = Stack(tmp_path / "nats-only", environ=given)
    stack.start()
    yield stack
    stack.stop()


@pytest.fixture
async def store(stack_info: StackInfo, db_name: str) -> AsyncIterator[Store]:
    opened = await connect_store(stack_info.mongodb_uri, db_name)
    yield opened
    await drop_database(opened.client, db_name)
    await opened.close()


class Scheduler:
    """The scheduler service's actors, run in this process."""

    def __init__(self, store: Store, broker: Broker) -> None:
        self.runners = [
            ActorRunner(actor, broker, store, fetch_timeout=0.2)
            for actor in (IngestedActor(store, broker), DueActor(store, broker))
        ]
        self.tasks = [asyncio.create_task(runner.run()) for runner in self.runners]

    async def stop(self) -> None:
        for runner in self.runners:
            runner.stop()
        async with asyncio.timeout(10):
            await asyncio.gather(*self.tasks)


async def _until(check: Callable[[], Awaitable[bool]]) -> None:
    async with asyncio.timeout(10):
        while not await check():  # noqa: ASYNC110 -- the store has no change notification
            await asyncio.sleep(0.05)


async def test_a_slot_due_while_everything_was_down_fires_once_late(
    own_nats: Stack, store: Store
) -> None:
    assert own_nats.info is not None
    url = own_nats.info.nats_url
    async with AsyncExitStack() as exits:
        broker = await connect_broker(url, "scheduler-before")
        await ensure_topology(broker.js)
        at = soon(2.0)
        tx = await seed_transaction(store, [at, soon(3600)])
        scheduler = Scheduler(store, broker)
        await broker.publish(
            Subjects.TX_INGESTED, TxIngested(transaction_id=tx.id, batches=2), msg_id=tx.id
        )

        async def scheduled() -> bool:
            return (await load_transaction(store, tx.id)).status == TxStatus.SCHEDULED

        await _until(scheduled)
        assert len(await schedule_messages(broker.js, tx.id)) == 2
        count = REGISTRY.get_sample_value("email_schedule_lateness_seconds_count") or 0.0

        # Both down: the scheduler first, then NATS; the slot's time passes meanwhile.
        await scheduler.stop()
        await broker.close()
        argv = own_nats.processes.argv("nats")
        own_nats.processes.stop("nats")
        down_until = at.timestamp() + 2.5
        await asyncio.sleep(down_until - datetime.now(UTC).timestamp())
        assert (await load_transaction(store, tx.id)).status == TxStatus.SCHEDULED

        own_nats.processes.start("nats", argv, cwd=own_nats.root)
        broker = await connect_broker(url, "scheduler-after")
        exits.push_async_callback(broker.close)
        await ensure_topology(broker.js)
        scheduler = Scheduler(store, broker)
        exits.push_async_callback(scheduler.stop)

        async def released() -> bool:
            return (await load_transaction(store, tx.id)).status == TxStatus.READY_TO_SEND

        await _until(released)
        await asyncio.sleep(0.5)  # room for a second firing, were there one

        after = await load_transaction(store, tx.id)
        entry = after.status_history[-1]
        assert entry.status == TxStatus.READY_TO_SEND
        late = entry.metadata["lateness_seconds"]
        assert 2.0 <= late < 10.0, late
        raw = await store.slots.find_one({"_id": f"{tx.id}:{entry.metadata['slot']}"})
        slot = from_document(raw, Slot)
        assert slot.lateness_seconds == late
        assert REGISTRY.get_sample_value("email_schedule_lateness_seconds_count") == count + 1
        # Once: one fired message, one release of the slot's batch, its rows only.
        due = await broker.js.stream_info("SCHEDULES", subjects_filter=Subjects.TX_DUE)
        assert due.state.subjects == {Subjects.TX_DUE: 1}
        assert await send_batches(broker.js) == [f"{tx.id}:batch:0"]
        assert await statuses(store, tx.id) == {
            2: "READY_TO_SEND",
            3: "READY_TO_SEND",
            4: "SCHEDULED",
            5: "SCHEDULED",
        }
        # The later slot still waits for its time.
        assert len(await schedule_messages(broker.js, tx.id)) == 1
