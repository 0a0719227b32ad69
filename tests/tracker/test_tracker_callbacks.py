"""Callbacks to a real local HTTP receiver: payload, Standard Webhooks signatures (and
rotation), order per transaction, retries with Retry-After, 410, dead letters, leases, and
the proof: a receiver that is down for a while still gets every callback, in order, once.

The actors run as in the tracker (``ActorRunner`` on the real streams), with retry
schedules of seconds.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec
import pytest

from services.tracker.callback_pump import CallbackPumpActor
from services.tracker.callback_retry import RetryPolicy, retry_after_seconds
from services.tracker.callbacks import CallbackActor
from services.tracker.workers import build_workers
from shared.actor import ActorRunner
from shared.callback_outbox import load_deliveries
from shared.documents import CallbackDelivery, DeadLetter, StatusEntry, Transaction, from_document
from shared.safe_http import parse_networks, safe_http_client
from shared.service import Runtime
from shared.settings import TrackerSettings
from shared.status import CallbackState
from shared.status import TxStatus as T
from shared.transitions import publish_status, transition_tx
from shared.webhook_secrets import find_secret, rotate_secret
from tests.tracker.callback_receiver import TEST_NETWORKS, Answer, Receiver, run_until
from tests.tracker.tracker_builders import insert, sent_transaction

TENANT = "tenant-1"
_PATH = (T.PROCESSING, T.READY_TO_SEND, T.SENT, T.COMPLETED)
_STATS = {"total": 0, "counts": {"delivered": 0}}


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    await found.start()
    yield found
    await found.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with safe_http_client(allowed=parse_networks(TEST_NETWORKS), timeout=5.0) as client:
        yield client


def actors(
    rt: Runtime,
    http: httpx.AsyncClient,
    *,
    delays: tuple[float, ...] = (1.0, 1.0, 1.0),
    timeout: float = 5.0,
) -> list[ActorRunner[Any]]:
    policy = RetryPolicy(delays=delays, retry_after_max=30.0)
    pump = CallbackPumpActor(rt.store, rt.broker, http, policy, timeout=timeout)
    return [
        ActorRunner(CallbackActor(rt.store, rt.broker), rt.broker, rt.store, fetch_timeout=0.2),
        ActorRunner(pump, rt.broker, rt.store, concurrency=16, fetch_timeout=0.2),
    ]


async def new_tx(rt: Runtime, url: str | None) -> Transaction:
    tx, _ = sent_transaction(0, status=T.ACCEPT, callback_url=url)
    await insert(rt.store, tx, [])
    return tx


async def walk(rt: Runtime, tx: Transaction, *path: T) -> None:
    """Make each change in turn, as the owning services would (COMPLETED with its stats)."""
    for status in path:
        current = from_document(await rt.store.transactions.find_one({"_id": tx.id}), Transaction)
        also = {"stats": _STATS} if status == T.COMPLETED else None
        assert await transition_tx(rt.store, rt.broker, current, status, also_set=also)


async def secret_of(rt: Runtime) -> str:
    return (await rotate_secret(rt.store, TENANT, timedelta(0))).secret


def delivered_all(receiver: Receiver, count: int, name: str | None = None) -> Any:
    async def check() -> bool:
        return len(receiver.delivered(name)) >= count

    return check


async def settled(rt: Runtime, tx_id: str, count: int) -> bool:
    found = await load_deliveries(rt.store, tx_id)
    return len(found) == count and all(d.state != CallbackState.PENDING for d in found)


async def test_every_change_is_delivered_in_order_signed_with_progress_and_stats(
    tracker: Runtime, receiver: Receiver, http: httpx.AsyncClient
) -> None:
    rt = tracker
    secret = await secret_of(rt)
    tx = await new_tx(rt, receiver.url())
    # The creation (no old status) is not called back.
    await publish_status(rt.broker, tx.id, tx.tenant, None, tx.status_history[0])
    await walk(rt, tx, *_PATH)
    await run_until(actors(rt, http), delivered_all(receiver, 4), 20)

    got = receiver.delivered()
    assert [(r.payload["old_status"], r.payload["new_status"]) for r in got] == [
        ("ACCEPT", "PROCESSING"),
        ("PROCESSING", "READY_TO_SEND"),
        ("READY_TO_SEND", "SENT"),
        ("SENT", "COMPLETED"),
    ]
    assert [r.webhook_id for r in got] == [f"{tx.id}:{n}" for n in range(1, 5)]
    assert all(r.verifies(secret) for r in got)
    assert all(r.headers["webhook-signature"].startswith("v1,") for r in got)
    assert all(r.headers["content-type"] == "application/json" for r in got)
    final = from_document(await rt.store.transactions.find_one({"_id": tx.id}), Transaction)
    for request, entry in zip(got, final.status_history[1:], strict=True):
        body = request.payload
        assert set(body) == {
            "transaction_id",
            "event_type",
            "old_status",
            "new_status",
            "timestamp",
            "progress",
            "stats",
        }
        assert body["transaction_id"] == tx.id
        assert body["event_type"] == "status_change"
        assert body["timestamp"].endswith("Z")
        assert abs((datetime.fromisoformat(body["timestamp"]) - entry.at).total_seconds()) < 0.001
        assert set(body["progress"]) == {
            "total_messages",
            "processed_messages",
            "percentage",
            "counts",
        }
        assert body["progress"]["counts"]["delivered"] == 0
        assert "bounced" in body["progress"]["counts"]
    assert [r.payload["stats"] for r in got] == [None, None, None, _STATS]
    assert got[-1].payload["progress"]["percentage"] == 100.0

    recorded = await load_deliveries(rt.store, tx.id)
    assert [(d.seq, d.state, [a.status_code for a in d.attempts]) for d in recorded] == [
        (n, CallbackState.DELIVERED, [200]) for n in range(1, 5)
    ]
    assert recorded[0].url == receiver.url()
    assert recorded[0].body == got[0].body
    assert recorded[0].attempts[0].duration_seconds >= 0


async def test_during_a_rotation_both_secrets_verify_then_only_the_new_one(
    tracker: Runtime, receiver: Receiver, http: httpx.AsyncClient
) -> None:
    rt = tracker
    old = await secret_of(rt)
    new = (await rotate_secret(rt.store, TENANT, timedelta(hours=24))).secret
    tx = await new_tx(rt, receiver.url())
    await walk(rt, tx, T.PROCESSING)
    await run_until(actors(rt, http), delivered_all(receiver, 1), 20)
    [during] = receiver.delivered()
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert during.verifies(old)
    assert during.verifies(new)

    # A rotation without a grace period: only the newest secret signs.
    newest = (await rotate_secret(rt.store, TENANT, timedelta(0))).secret
    await walk(rt, tx, T.READY_TO_SEND)
    await run_until(actors(rt, http), delivered_all(receiver, 2), 20)
    after = receiver.delivered()[1]
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    assert after.verifies(newest)
    assert not after.verifies(new)
    assert not after.verifies(old)


async def test_the_secret_is_made_on_first_need(
    tracker: Runtime, receiver: Receiver, http: httpx.AsyncClient
) -> None:
    rt = tracker
    tx = await new_tx(rt, receiver.url())
    await walk(rt, tx, T.PROCESSING)
    await run_until(actors(rt, http), delivered_all(receiver, 1), 20)
    stored = await find_secret(rt.store, TENANT)
    assert stored is not None
    assert stored.secret.startswith("whsec_")
    assert not stored.revealed
    assert receiver.delivered()[0].verifies(stored.secret)


async def test_a_failed_callback_is_retried_with_the_same_id_and_holds_back_the_next(
    tracker: Runtime, receiver: Receiver, http: httpx.AsyncClient
) -> None:
    rt = tracker
    secret = await secret_of(rt)
    tx = await new_tx(rt, receiver.url())
    receiver.plans["main"] = [500, 503]
    await walk(rt, tx, T.PROCESSING, T.READY_TO_SEND)
    await run_until(actors(rt, http), delivered_all(receiver, 2), 30)

    assert [(r.webhook_id, r.status) for r in receiver.received] == [
        (f"{tx.id}:1", 500),
        (f"{tx.id}:1", 503),
        (f"{tx.id}:1", 200),
        (f"{tx.id}:2", 200),
    ]
    assert all(r.verifies(secret) for r in receiver.received)
    # The same body every time; about a second between tries (the schedule, whole seconds).
    assert len({r.body for r in receiver.received[:3]}) == 1
    tries = [r.monotonic for r in receiver.received[:3]]
    gaps = [later - earlier for earlier, later in itertools.pairwise(tries)]
    assert all(0.8 <= gap <= 3.5 for gap in gaps), gaps
    [first, second] = await load_deliveries(rt.store, tx.id)
    assert [a.status_code for a in first.attempts] == [500, 503, 200]
    assert first.failures == 2
    assert first.state == CallbackState.DELIVERED
    assert [a.status_code for a in second.attempts] == [200]
    assert await rt.store.dead_letters.count_documents({}) == 0


async def test_retry_after_is_honoured(
    tracker: Runtime, receiver: Receiver, http: httpx.AsyncClient
) -> None:
    rt = tracker
    tx = await new_tx(rt, receiver.url())
    receiver.plans["main"] = [Answer(503, {"Retry-After": "3"})]
    await walk(rt, tx, T.PROCESSING)
    await run_until(actors(rt, http, delays=(0.5,)), delivered_all(receiver, 1), 20)
    first, second = receiver.received
    assert second.monotonic - first.monotonic >= 2.9
    [recorded] = await load_deliveries(rt.store, tx.id)
    assert [a.status_code for a in recorded.attempts] == [503, 200]


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("120", now) == 120.0
    assert retry_after_seconds("Tue, 01 Jan 2030 12:01:00 GMT", now) == 60.0
    assert retry_after_seconds("Tue, 01 Jan 2030 11:00:00 GMT", now) == 0.0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None
    policy = RetryPolicy(delays=(10.0, 20.0), retry_after_max=60.0)
    assert policy.delay(1, 3600.0) == 60.0  # capped
    assert 18.0 <= (policy.delay(2, None) or 0) <= 22.0  # jitter of 10 %
    assert policy.delay(3, None) is None  # past the schedule: dead


async def test_gone_disables_the_url_for_the_tenant_until_a_rotation(
    tracker: Runtime, receiver: Receiver, http: httpx.AsyncClient
) -> None:
    rt = tracker
    await secret_of(rt)
    url = receiver.url("gone")
    receiver.plans["gone"] = [410]
    first = await new_tx(rt, url)
    await walk(rt, first, T.PROCESSING, T.READY_TO_SEND)
    await run_until(actors(rt, http), lambda: settled(rt, first.id, 2), 20)
    # Another transaction of the tenant, to the same URL: nothing is sent.
    other = await new_tx(rt, url)
    await walk(rt, other, T.PROCESSING)
    await run_until(actors(rt, http), lambda: settled(rt, other.id, 1), 20)

    assert [r.status for r in receiver.received] == [410]
    gone, skipped = await load_deliveries(rt.store, first.id)
    assert gone.state == CallbackState.SKIPPED
    assert [a.status_code for a in gone.attempts] == [410]
    assert skipped.state == CallbackState.SKIPPED
    assert [(a.skipped, a.status_code) for a in skipped.attempts] == [(True, None)]
    [other_one] = await load_deliveries(rt.store, other.id)
    assert other_one.state == CallbackState.SKIPPED
    stored = await find_secret(rt.store, TENANT)
    assert stored is not None
    assert stored.disabled_urls == [url]
    # Rotating the secret enables the URL again.
    rotated = await rotate_secret(rt.store, TENANT, timedelta(0))
    assert rotated.disabled_urls == []
    await walk(rt, other, T.READY_TO_SEND)
    await run_until(actors(rt, http), delivered_all(receiver, 1, "gone"), 20)
    assert receiver.delivered("gone")[0].payload["new_status"] == "READY_TO_SEND"


async def test_exhausted_retries_dead_letter_the_callback_and_the_next_ones_go_on(
    tracker: Runtime, receiver: Receiver, http: httpx.AsyncClient
) -> None:
    rt = tracker
    tx = await new_tx(rt, receiver.url())
    receiver.plans["main"] = [500, 502]
    await walk(rt, tx, T.PROCESSING, T.READY_TO_SEND)
    await run_until(actors(rt, http, delays=(1.0,)), delivered_all(receiver, 1), 20)

    assert [(r.webhook_id, r.status) for r in receiver.received] == [
        (f"{tx.id}:1", 500),
        (f"{tx.id}:1", 502),
        (f"{tx.id}:2", 200),
    ]
    dead, delivered = await load_deliveries(rt.store, tx.id)
    assert dead.state == CallbackState.DEAD
    assert [a.status_code for a in dead.attempts] == [500, 502]
    assert delivered.state == CallbackState.DELIVERED
    [raw] = await rt.store.dead_letters.find({}).to_list(None)
    letter = from_document(raw, DeadLetter)
    assert letter.kind == "callback"
    assert letter.transaction_id == tx.id
    assert letter.message_id == dead.id
    assert letter.payload == dead.body
    assert letter.deliveries == 2
    assert "HTTP 502" in letter.error


async def test_one_transaction_failing_does_not_hold_back_another(
    tracker: Runtime, receiver: Receiver, http: httpx.AsyncClient
) -> None:
    rt = tracker
    slow = await new_tx(rt, receiver.url("slow"))
    fast = await new_tx(rt, receiver.url("fast"))
    receiver.plans["slow"] = [503, 503, 503]
    await walk(rt, slow, *_PATH)
    await walk(rt, fast, *_PATH)
    runners = actors(rt, http, delays=(1.0, 1.0, 1.0, 1.0))
    await run_until(runners, delivered_all(receiver, 4, "slow"), 30)

    fast_got = receiver.delivered("fast")
    slow_got = receiver.delivered("slow")
    assert [r.webhook_id for r in fast_got] == [f"{fast.id}:{n}" for n in range(1, 5)]
    assert [r.webhook_id for r in slow_got] == [f"{slow.id}:{n}" for n in range(1, 5)]
    # All of the fast one's were in while the slow one's first was still failing.
    assert fast_got[-1].monotonic < slow_got[0].monotonic


async def test_a_callback_held_by_a_pump_that_died_is_sent_when_its_lease_ends(
    tracker: Runtime, receiver: Receiver, http: httpx.AsyncClient
) -> None:
    rt = tracker
    tx = await new_tx(rt, receiver.url())
    await walk(rt, tx, T.PROCESSING)
    # Record it, without a pump: then claim it as a pump would, and "die".
    [outbox] = actors(rt, http)[:1]
    await outbox.run(until_idle=True)
    held_until = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    await rt.store.callbacks.update_one(
        {"_id": f"{tx.id}:1"}, {"$set": {"lease_until": held_until}}
    )
    started = datetime.now(UTC)
    await run_until(actors(rt, http), delivered_all(receiver, 1), 20)
    assert datetime.now(UTC) >= held_until
    assert (datetime.now(UTC) - started).total_seconds() < 10
    [recorded] = await load_deliveries(rt.store, tx.id)
    assert [a.status_code for a in recorded.attempts] == [200]


async def test_a_refused_address_is_a_failed_try_that_is_retried(
    tracker: Runtime, receiver: Receiver
) -> None:
    rt = tracker
    tx = await new_tx(rt, receiver.url())
    await walk(rt, tx, T.PROCESSING)

    async def failed_once() -> bool:
        found = await load_deliveries(rt.store, tx.id)
        return bool(found) and len(found[0].attempts) >= 1

    async with safe_http_client(allowed=(), timeout=5.0) as strict:
        await run_until(actors(rt, strict, delays=(60.0,)), failed_once, 20)
    [recorded] = await load_deliveries(rt.store, tx.id)
    assert recorded.state == CallbackState.PENDING
    assert recorded.failures == 1
    assert recorded.attempts[0].status_code is None
    assert "UnsafeAddress" in (recorded.attempts[0].error or "")
    assert receiver.received == []


async def test_no_callback_url_nothing_recorded(
    tracker: Runtime, receiver: Receiver, http: httpx.AsyncClient
) -> None:
    rt = tracker
    tx = await new_tx(rt, None)
    await walk(rt, tx, T.PROCESSING)
    entry = StatusEntry(status=T.PROCESSING, at=datetime.now(UTC))
    await publish_status(rt.broker, "tx-unknown", TENANT, T.ACCEPT, entry)
    for runner in actors(rt, http):
        await runner.run(until_idle=True)
    assert receiver.received == []
    assert await rt.store.callbacks.count_documents({}) == 0


async def test_proof_a_receiver_down_for_a_while_gets_every_callback_in_order_once(
    tracker: Runtime, receiver: Receiver, http: httpx.AsyncClient
) -> None:
    """The receiver is stopped (connections refused) while five transactions go through
    four changes each, then started again on the same port: every callback arrives, in
    status order per transaction, signed, each webhook-id answered 200 once."""
    rt = tracker
    secret = await secret_of(rt)
    txs = [await new_tx(rt, receiver.url(f"t{i}")) for i in range(5)]
    await receiver.stop()
    down_until = 0.0

    async def outage() -> None:
        nonlocal down_until
        for tx in txs:
            await walk(rt, tx, T.PROCESSING, T.READY_TO_SEND)
        await asyncio.sleep(2.5)  # tries fail meanwhile: connection refused
        for tx in txs:
            await walk(rt, tx, T.SENT, T.COMPLETED)
        await asyncio.sleep(1.0)
        down_until = time.monotonic()
        await receiver.start()

    runners = actors(rt, http, delays=(1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0))
    await run_until(runners, delivered_all(receiver, 20), 60, during=outage)

    got = receiver.delivered()
    assert all(r.monotonic > down_until for r in got)
    assert all(r.verifies(secret) for r in got)
    once = Counter(r.webhook_id for r in got)
    assert set(once.values()) == {1}, once
    assert set(once) == {f"{tx.id}:{n}" for tx in txs for n in range(1, 5)}
    for i, tx in enumerate(txs):
        mine = receiver.delivered(f"t{i}")
        assert [r.webhook_id for r in mine] == [f"{tx.id}:{n}" for n in range(1, 5)]
        assert [r.payload["new_status"] for r in mine] == [s.value for s in _PATH]
        recorded = await load_deliveries(rt.store, tx.id)
        assert all(d.state == CallbackState.DELIVERED for d in recorded)
        # The first ones failed while the receiver was down, and say why.
        assert any(a.error and "ConnectError" in a.error for a in recorded[0].attempts)
        assert [a.status_code for a in recorded[0].attempts][-1] == 200
    assert await rt.store.dead_letters.count_documents({}) == 0


async def test_outbox_documents_round_trip(tracker: Runtime) -> None:
    """What the outbox writes reads back as the same Struct (a guard on the document)."""
    rt = tracker
    tx = await new_tx(rt, "http://127.0.0.1:9/hook")
    await walk(rt, tx, T.PROCESSING)
    await ActorRunner(CallbackActor(rt.store, rt.broker), rt.broker, rt.store).run(until_idle=True)
    [found] = await load_deliveries(rt.store, tx.id)
    raw = await rt.store.callbacks.find_one({"_id": found.id})
    assert from_document(raw, CallbackDelivery) == found
    assert msgspec.json.decode(found.body)["new_status"] == "PROCESSING"


async def test_the_tracker_runs_the_outbox_and_the_pump(tracker: Runtime) -> None:
    settings = TrackerSettings(callback_allowed_networks=TEST_NETWORKS, callback_concurrency=4)
    workers = await build_workers(tracker, settings)
    runners = {type(w.actor).__name__: w for w in workers if isinstance(w, ActorRunner)}
    assert runners["CallbackPumpActor"].concurrency == 4
    pump = runners["CallbackPumpActor"].actor
    assert isinstance(pump, CallbackPumpActor)
    assert pump.policy.delays == (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
    assert "CallbackActor" in runners
