"""The scheduler against the real store and NATS: slots scheduled, fired, cancelled, moved."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY

from services.gateway.records import shift_schedule
from services.scheduler.control import ControlActor
from services.scheduler.scheduling import DueActor, IngestedActor
from shared.actor import ActorRunner
from shared.documents import Slot, Transaction, from_document, message_id
from shared.events import ControlAction, TxControl, TxDue, TxIngested
from shared.records import load_transaction
from shared.schedule import IMMEDIATE, schedule_stamp, slot_of
from shared.service import Runtime
from shared.settlement import settle
from shared.status import MessageStatus, TxStatus
from shared.topology import Subjects
from shared.transitions import move_messages
from tests.msg_status import announced_rows
from tests.scheduler.scheduler_builders import (
    schedule_messages,
    seed_transaction,
    send_batches,
    soon,
    statuses,
)

M = MessageStatus


def _lateness_count() -> float:
    return REGISTRY.get_sample_value("email_schedule_lateness_seconds_count") or 0.0


async def _slot(rt: Runtime, tx: Transaction, number: int) -> Slot:
    raw = await rt.store.slots.find_one({"transaction_id": tx.id, "batches": number})
    assert raw is not None
    return from_document(raw, Slot)


async def _ingested(rt: Runtime, tx: Transaction) -> Transaction:
    await IngestedActor(rt.store, rt.broker).handle(
        TxIngested(transaction_id=tx.id, batches=tx.batches)
    )
    return await load_transaction(rt.store, tx.id)


async def test_slots_that_wait_make_the_transaction_scheduled_with_one_schedule_each(
    scheduler: Runtime,
) -> None:
    rt = scheduler
    first, second = soon(3600), soon(7200)
    tx = await seed_transaction(rt.store, [first, second])

    after = await _ingested(rt, tx)

    assert after.status == TxStatus.SCHEDULED
    stamps = [schedule_stamp(first), schedule_stamp(second)]
    assert after.status_history[-1].metadata == {"send_at": stamps[0], "slots": 2}
    pending = await schedule_messages(rt.broker.js, tx.id)
    assert set(pending) == {Subjects.schedule(tx.id, slot_of(at)) for at in (first, second)}
    for at, stamp in zip((first, second), stamps, strict=True):
        headers = pending[Subjects.schedule(tx.id, slot_of(at))]
        assert headers["Nats-Schedule"] == f"@at {stamp}"
        assert headers["Nats-Schedule-Target"] == Subjects.TX_DUE
        assert json.loads(headers["data"]) == {
            "transaction_id": tx.id,
            "slot": slot_of(at),
            "generation": 0,
        }
    # Never before a row's time: whole seconds, rounded up.
    assert datetime.fromisoformat(stamps[0]) >= first
    assert await send_batches(rt.broker.js) == []
    assert set((await statuses(rt.store, tx.id)).values()) == {M.SCHEDULED}

    # A redelivery of the hand-over changes nothing.
    await _ingested(rt, tx)
    assert len(await schedule_messages(rt.broker.js, tx.id)) == 2
    assert [e.status for e in (await load_transaction(rt.store, tx.id)).status_history] == [
        TxStatus.ACCEPT,
        TxStatus.PROCESSING,
        TxStatus.SCHEDULED,
    ]


async def test_rows_due_at_once_are_released_and_the_rest_scheduled(scheduler: Runtime) -> None:
    rt = scheduler
    later = soon(3600)
    tx = await seed_transaction(rt.store, [None, later])

    after = await _ingested(rt, tx)

    assert after.status == TxStatus.READY_TO_SEND
    assert after.status_history[-1].metadata == {}
    assert await send_batches(rt.broker.js) == [f"{tx.id}:batch:0"]
    assert list(await schedule_messages(rt.broker.js, tx.id)) == [
        Subjects.schedule(tx.id, slot_of(later))
    ]
    assert await statuses(rt.store, tx.id) == {
        2: M.READY_TO_SEND,
        3: M.READY_TO_SEND,
        4: M.SCHEDULED,
        5: M.SCHEDULED,
    }
    assert (await _slot(rt, tx, 0)).fired_at is not None


async def test_a_slot_fires_through_its_schedule_and_records_its_lateness(
    scheduler: Runtime,
) -> None:
    rt = scheduler
    at = soon(1.5)
    tx = await seed_transaction(rt.store, [at])
    assert (await _ingested(rt, tx)).status == TxStatus.SCHEDULED
    count = _lateness_count()

    runner = ActorRunner(DueActor(rt.store, rt.broker), rt.broker, rt.store, fetch_timeout=0.2)
    running = asyncio.create_task(runner.run())
    try:
        async with asyncio.timeout(10):
            while (await load_transaction(rt.store, tx.id)).status != TxStatus.READY_TO_SEND:  # noqa: ASYNC110 -- the store has no change notification
                await asyncio.sleep(0.05)
    finally:
        runner.stop()
        await running

    after = await load_transaction(rt.store, tx.id)
    late = after.status_history[-1].metadata["lateness_seconds"]
    assert 0 <= late < 1
    assert after.counters["ready_to_send"] == 2
    assert after.counters["scheduled"] == 0
    assert set((await statuses(rt.store, tx.id)).values()) == {M.READY_TO_SEND}
    assert await send_batches(rt.broker.js) == [f"{tx.id}:batch:0"]
    slot = await _slot(rt, tx, 0)
    assert slot.lateness_seconds == late
    assert slot.fired_at is not None
    assert slot.fired_at >= at
    assert _lateness_count() == count + 1
    assert await schedule_messages(rt.broker.js, tx.id) == {}


async def test_a_slot_fired_twice_is_released_once(scheduler: Runtime) -> None:
    rt = scheduler
    tx = await seed_transaction(rt.store, [soon(3600)])
    await _ingested(rt, tx)
    due = DueActor(rt.store, rt.broker)
    event = TxDue(transaction_id=tx.id, slot=(await _slot(rt, tx, 0)).slot)
    count = _lateness_count()

    await due.handle(event)
    await due.handle(event)

    after = await load_transaction(rt.store, tx.id)
    assert [e.status for e in after.status_history].count(TxStatus.READY_TO_SEND) == 1
    assert after.counters["ready_to_send"] == 2
    assert await send_batches(rt.broker.js) == [f"{tx.id}:batch:0"]
    assert _lateness_count() == count + 1


async def test_later_slots_record_their_lateness_on_the_slot_only(scheduler: Runtime) -> None:
    rt = scheduler
    tx = await seed_transaction(rt.store, [soon(3600), soon(7200)])
    await _ingested(rt, tx)
    due = DueActor(rt.store, rt.broker)

    await due.handle(TxDue(transaction_id=tx.id, slot=(await _slot(rt, tx, 0)).slot))
    middle = await load_transaction(rt.store, tx.id)
    assert middle.status == TxStatus.READY_TO_SEND
    assert middle.counters["scheduled"] == 2  # the second slot's rows still wait
    assert await settle(rt.store, rt.broker, tx.id) is None
    await due.handle(TxDue(transaction_id=tx.id, slot=(await _slot(rt, tx, 1)).slot))

    after = await load_transaction(rt.store, tx.id)
    assert [e.status for e in after.status_history].count(TxStatus.READY_TO_SEND) == 1
    assert after.counters["ready_to_send"] == 4
    assert (await _slot(rt, tx, 1)).lateness_seconds == 0.0  # "fired" an hour early here
    assert await send_batches(rt.broker.js) == [f"{tx.id}:batch:0", f"{tx.id}:batch:1"]


async def test_nothing_left_to_send_goes_to_sent(scheduler: Runtime) -> None:
    rt = scheduler
    tx = await seed_transaction(rt.store, [soon(3600)])
    ids = [message_id(tx.id, row) for row in (2, 3)]
    await move_messages(rt.store, tx.id, ids, M.SCHEDULED, M.SUPPRESSED)

    after = await _ingested(rt, tx)

    assert [e.status for e in after.status_history][2:] == [TxStatus.READY_TO_SEND, TxStatus.SENT]


async def test_a_stale_slot_does_nothing(scheduler: Runtime) -> None:
    rt = scheduler
    tx = await seed_transaction(rt.store, [soon(3600)])
    await _ingested(rt, tx)
    slot = (await _slot(rt, tx, 0)).slot
    await rt.store.transactions.update_one({"_id": tx.id}, {"$set": {"schedule.generation": 1}})

    await DueActor(rt.store, rt.broker).handle(TxDue(transaction_id=tx.id, slot=slot))

    after = await load_transaction(rt.store, tx.id)
    assert after.status == TxStatus.SCHEDULED
    assert set((await statuses(rt.store, tx.id)).values()) == {M.SCHEDULED}
    assert await send_batches(rt.broker.js) == []


async def test_cancel_purges_schedules_and_cancels_what_waits(scheduler: Runtime) -> None:
    rt = scheduler
    tx = await seed_transaction(rt.store, [None, soon(3600)])
    await _ingested(rt, tx)
    # A sender holds one message of the released batch.
    await move_messages(rt.store, tx.id, [message_id(tx.id, 2)], M.READY_TO_SEND, M.SENDING)
    await rt.store.transactions.update_one(
        {"_id": tx.id}, {"$set": {"cancel_requested_at": datetime.now(UTC)}}
    )

    await ControlActor(rt.store, rt.broker).handle(
        TxControl(transaction_id=tx.id, action=ControlAction.CANCEL)
    )

    assert await schedule_messages(rt.broker.js, tx.id) == {}
    assert await statuses(rt.store, tx.id) == {
        2: M.SENDING,
        3: M.CANCELLED,
        4: M.CANCELLED,
        5: M.CANCELLED,
    }
    assert await announced_rows(rt.broker, tx.id) == {"CANCELLED": [3, 4, 5]}
    middle = await load_transaction(rt.store, tx.id)
    assert middle.status == TxStatus.READY_TO_SEND  # until the send in flight ends
    assert (middle.counters["cancelled"], middle.counters["sending"]) == (3, 1)
    # The later slot fires anyway (a schedule that fired before the purge): nothing happens.
    await DueActor(rt.store, rt.broker).handle(
        TxDue(transaction_id=tx.id, slot=(await _slot(rt, tx, 1)).slot)
    )
    assert (await statuses(rt.store, tx.id))[4] == M.CANCELLED

    # The sender ends its send and settles.
    await move_messages(rt.store, tx.id, [message_id(tx.id, 2)], M.SENDING, M.SENT)
    assert await settle(rt.store, rt.broker, tx.id) == TxStatus.CANCELLED


async def test_a_cancel_during_ingest_cancels_at_the_hand_over(scheduler: Runtime) -> None:
    rt = scheduler
    tx = await seed_transaction(rt.store, [None, soon(3600)])
    await rt.store.transactions.update_one(
        {"_id": tx.id}, {"$set": {"cancel_requested_at": datetime.now(UTC)}}
    )

    after = await _ingested(rt, tx)

    assert after.status == TxStatus.CANCELLED
    assert set((await statuses(rt.store, tx.id)).values()) == {M.CANCELLED}
    assert await send_batches(rt.broker.js) == []
    assert await schedule_messages(rt.broker.js, tx.id) == {}


async def _reschedule(rt: Runtime, tx_id: str, send_at: datetime) -> Transaction:
    """What the gateway records, then the scheduler's part."""
    tx = await load_transaction(rt.store, tx_id)
    assert tx.schedule is not None
    assert tx.schedule.first_at is not None
    generation = tx.schedule.generation + 1
    shift = (send_at - tx.schedule.first_at).total_seconds()
    assert await shift_schedule(
        rt.store, tx, send_at=send_at, shift_seconds=shift, generation=generation, now=send_at
    )
    await ControlActor(rt.store, rt.broker).handle(
        TxControl(transaction_id=tx.id, action=ControlAction.RESCHEDULE, generation=generation)
    )
    return await load_transaction(rt.store, tx.id)


async def test_reschedule_moves_every_slot_and_old_schedules_are_stale(
    scheduler: Runtime,
) -> None:
    rt = scheduler
    first, second = soon(3600), soon(7200)
    tx = await seed_transaction(rt.store, [first, second])
    await _ingested(rt, tx)
    old = (await _slot(rt, tx, 0)).fire_at

    after = await _reschedule(rt, tx.id, old + timedelta(minutes=30))

    assert after.status == TxStatus.SCHEDULED
    pending = await schedule_messages(rt.broker.js, tx.id)
    for number in (0, 1):
        slot = await _slot(rt, tx, number)
        headers = pending[Subjects.schedule(tx.id, slot.slot)]
        assert (
            headers["Nats-Schedule"]
            == f"@at {schedule_stamp(slot.fire_at + timedelta(minutes=30))}"
        )
        assert json.loads(headers["data"])["generation"] == 1
    # A schedule of generation 0 that fired before the purge does nothing.
    slot0 = (await _slot(rt, tx, 0)).slot
    await DueActor(rt.store, rt.broker).handle(TxDue(transaction_id=tx.id, slot=slot0))
    assert (await load_transaction(rt.store, tx.id)).status == TxStatus.SCHEDULED
    # Generation 1's does.
    await DueActor(rt.store, rt.broker).handle(
        TxDue(transaction_id=tx.id, slot=slot0, generation=1)
    )
    assert (await load_transaction(rt.store, tx.id)).status == TxStatus.READY_TO_SEND


async def test_reschedule_to_a_moment_ago_releases_the_first_slot_at_once(
    scheduler: Runtime,
) -> None:
    rt = scheduler
    tx = await seed_transaction(rt.store, [soon(3600), soon(7200)])
    await _ingested(rt, tx)

    # A minute back is within the 5 minutes that mean now.
    after = await _reschedule(rt, tx.id, datetime.now(UTC) - timedelta(minutes=1))

    assert after.status == TxStatus.READY_TO_SEND
    assert await send_batches(rt.broker.js) == [f"{tx.id}:batch:0"]
    second = await _slot(rt, tx, 1)
    assert list(await schedule_messages(rt.broker.js, tx.id)) == [
        Subjects.schedule(tx.id, second.slot)
    ]
    assert second.slot != IMMEDIATE


async def test_a_superseded_reschedule_does_nothing(scheduler: Runtime) -> None:
    rt = scheduler
    tx = await seed_transaction(rt.store, [soon(3600)])
    await _ingested(rt, tx)
    await rt.store.transactions.update_one(
        {"_id": tx.id},
        {"$set": {"schedule.generation": 2, "schedule.shift_seconds": -3600.0}},
    )

    await ControlActor(rt.store, rt.broker).handle(
        TxControl(transaction_id=tx.id, action=ControlAction.RESCHEDULE, generation=1)
    )

    assert (await load_transaction(rt.store, tx.id)).status == TxStatus.SCHEDULED
    [headers] = (await schedule_messages(rt.broker.js, tx.id)).values()
    assert json.loads(headers["data"])["generation"] == 0
