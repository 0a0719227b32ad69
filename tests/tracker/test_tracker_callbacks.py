"""Callbacks POSTed to a real local HTTP receiver: payload, order, retry, audit trail."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiohttp import web

from services.tracker.callbacks import CallbackActor
from shared.actor import ActorRunner
from shared.documents import CallbackAttempt, StatusEntry, Transaction, from_document
from shared.service import Runtime
from shared.status import TxStatus as T
from shared.transitions import publish_status, transition_tx
from tests.tracker.tracker_builders import insert, sent_transaction


class Receiver:
    """A callback receiver on a free loopback port, answering from a plan (then 200)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.plan: list[int] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _hook(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/json"
        self.received.append(await request.json())
        return web.Response(status=self.plan.pop(0) if self.plan else 200)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/hook"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    await found.start()
    yield found
    await found.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client


async def walk(rt: Runtime, tx: Transaction, *path: T) -> None:
    """Make each change in turn, as the owning services would."""
    for status in path:
        current = from_document(await rt.store.transactions.find_one({"_id": tx.id}), Transaction)
        assert await transition_tx(rt.store, rt.broker, current, status)


async def run_until(runner: ActorRunner[Any], done: Callable[[], bool], seconds: float) -> None:
    """Run the actor (redeliveries included) until ``done``, for at most ``seconds``."""
    task = asyncio.create_task(runner.run())
    try:
        for _ in range(int(seconds / 0.05)):
            if done():
                break
            await asyncio.sleep(0.05)
    finally:
        runner.stop()
        await asyncio.wait_for(task, 10)
    assert done(), "timed out"


async def attempts(rt: Runtime, tx_id: str) -> list[CallbackAttempt]:
    found = rt.store.callbacks.find({"transaction_id": tx_id})
    return sorted(
        [from_document(raw, CallbackAttempt) async for raw in found],
        key=lambda a: (a.at, a.attempt),
    )


async def test_every_change_is_posted_in_order(
    tracker: Runtime, receiver: Receiver, http: httpx.AsyncClient
) -> None:
    rt = tracker
    tx, _ = sent_transaction(0, status=T.ACCEPT, callback_url=receiver.url)
    await insert(rt.store, tx, [])
    # The creation (no old status) is not called back.
    await publish_status(rt.broker, tx.id, tx.tenant, None, tx.status_history[0])
    await walk(rt, tx, T.PROCESSING, T.READY_TO_SEND, T.SENT, T.COMPLETED)
    runner = ActorRunner(CallbackActor(rt.store, http), rt.broker, rt.store, concurrency=1)
    await runner.run(until_idle=True)

    changes = [(r["old_status"], r["new_status"]) for r in receiver.received]
    assert changes == [
        ("ACCEPT", "PROCESSING"),
        ("PROCESSING", "READY_TO_SEND"),
        ("READY_TO_SEND", "SENT"),
        ("SENT", "COMPLETED"),
    ]
    final = from_document(await rt.store.transactions.find_one({"_id": tx.id}), Transaction)
    for body, entry in zip(receiver.received, final.status_history[1:], strict=True):
        assert set(body) == {
            "transaction_id",
            "event_type",
            "old_status",
            "new_status",
            "timestamp",
        }
        assert body["transaction_id"] == tx.id
        assert body["event_type"] == "status_change"
        assert body["timestamp"].endswith("Z")
        sent_at = datetime.fromisoformat(body["timestamp"])
        assert sent_at.tzinfo is not None
        assert abs((sent_at - entry.at).total_seconds()) < 0.001
    recorded = await attempts(rt, tx.id)
    assert [(a.id, a.attempt, a.status_code) for a in recorded] == [
        (f"{tx.id}:PROCESSING:1", 1, 200),
        (f"{tx.id}:READY_TO_SEND:1", 1, 200),
        (f"{tx.id}:SENT:1", 1, 200),
        (f"{tx.id}:COMPLETED:1", 1, 200),
    ]
    assert recorded[0].url == receiver.url
    assert recorded[0].payload == receiver.received[0]


async def test_a_failed_callback_is_retried_and_holds_back_the_next(
    tracker: Runtime, receiver: Receiver, http: httpx.AsyncClient
) -> None:
    rt = tracker
    tx, _ = sent_transaction(0, status=T.ACCEPT, callback_url=receiver.url)
    await insert(rt.store, tx, [])
    receiver.plan = [500]  # the first POST fails
    await walk(rt, tx, T.PROCESSING, T.READY_TO_SEND)
    runner = ActorRunner(CallbackActor(rt.store, http), rt.broker, rt.store, concurrency=1)
    await run_until(runner, lambda: len(receiver.received) >= 3, seconds=20)

    assert [r["new_status"] for r in receiver.received] == [
        "PROCESSING",
        "PROCESSING",
        "READY_TO_SEND",
    ]
    recorded = await attempts(rt, tx.id)
    assert [(a.id, a.status_code) for a in recorded] == [
        (f"{tx.id}:PROCESSING:1", 500),
        (f"{tx.id}:PROCESSING:2", 200),
        (f"{tx.id}:READY_TO_SEND:1", 200),
    ]
    assert await rt.store.dead_letters.count_documents({}) == 0


async def test_network_errors_are_recorded_and_retried(
    tracker: Runtime, http: httpx.AsyncClient
) -> None:
    rt = tracker
    closed = Receiver()
    await closed.start()
    url = closed.url
    await closed.stop()  # nothing listens there any more
    tx, _ = sent_transaction(0, status=T.ACCEPT, callback_url=url)
    await insert(rt.store, tx, [])
    await walk(rt, tx, T.PROCESSING)
    runner = ActorRunner(CallbackActor(rt.store, http), rt.broker, rt.store, concurrency=1)
    running = asyncio.create_task(runner.run())
    for _ in range(200):  # until the first attempt is on record, 10 s at most
        if recorded := await attempts(rt, tx.id):
            break
        await asyncio.sleep(0.05)
    runner.stop()
    await running
    assert len(recorded) == 1
    assert recorded[0].status_code is None
    assert recorded[0].error is not None
    assert "ConnectError" in recorded[0].error
    # Not acknowledged: it comes back after the backoff.
    info = await rt.broker.js.consumer_info("TX_STATUS", "tracker-callbacks")
    assert info.num_ack_pending == 1


async def test_no_callback_url_no_post(
    tracker: Runtime, receiver: Receiver, http: httpx.AsyncClient
) -> None:
    rt = tracker
    tx, _ = sent_transaction(0, status=T.ACCEPT)
    await insert(rt.store, tx, [])
    await walk(rt, tx, T.PROCESSING)
    entry = StatusEntry(status=T.PROCESSING, at=datetime.now(UTC))
    await publish_status(rt.broker, "tx-unknown", "tenant-1", T.ACCEPT, entry)
    runner = ActorRunner(CallbackActor(rt.store, http), rt.broker, rt.store, concurrency=1)
    await runner.run(until_idle=True)
    assert receiver.received == []
    assert await rt.store.callbacks.count_documents({}) == 0
