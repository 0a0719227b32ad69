"""What outcomes do beyond a message's status: the suppression list, the outcome events on
``email.msg.status.<STATUS>``, each event recorded once, and the delivery timeout."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

from services.tracker.delivery_timeout import ExpiryActor, SentActor
from shared.actor import ActorRunner
from shared.documents import Suppression, Transaction, from_document, suppression_id
from shared.service import Runtime
from shared.status import MessageStatus as M
from shared.status import TxStatus
from shared.topology import Subjects
from tests.msg_status import outcome_events
from tests.tracker.test_tracker_events import (
    drain,
    interesting,
    load_tx,
    message,
    publish,
    statuses,
)
from tests.tracker.tracker_builders import insert, payload, sent_transaction, ses_event, ses_id


async def suppressions(rt: Runtime, tenant: str) -> dict[str, str]:
    found = rt.store.suppressions.find({"tenant": tenant})
    return {s.email: s.reason async for s in (from_document(r, Suppression) async for r in found)}


async def test_permanent_bounces_and_complaints_suppress_the_address(tracker: Runtime) -> None:
    rt = tracker
    tx, messages = sent_transaction(4)
    await insert(rt.store, tx, messages)
    await publish(
        rt,
        ses_event("Bounce", tx.id, 2),
        ses_event("Bounce", tx.id, 3, bounce_type="Transient"),
        ses_event("Delivery", tx.id, 4),
        ses_event("Complaint", tx.id, 5),
    )
    await drain(rt)
    assert await statuses(rt, tx.id) == {2: M.BOUNCED, 3: M.SENT, 4: M.DELIVERED, 5: M.COMPLAINED}
    assert await suppressions(rt, tx.tenant) == {
        "user2@example.com": "bounced",
        "user5@example.com": "complained",
    }
    # A complaint about a message already past its outcome still suppresses the address.
    await publish(rt, ses_event("Complaint", tx.id, 2))
    await drain(rt)
    assert (await suppressions(rt, tx.tenant))["user2@example.com"] == "bounced"
    assert await rt.store.suppressions.find_one(
        {"_id": suppression_id(tx.tenant, "USER2@example.com")}
    )


async def test_outcomes_are_announced_per_status_in_batches(tracker: Runtime) -> None:
    rt = tracker
    tx, messages = sent_transaction(5)
    await insert(rt.store, tx, messages)
    await publish(
        rt,
        ses_event("Delivery", tx.id, 2),
        ses_event("Delivery", tx.id, 3),
        ses_event("Bounce", tx.id, 4),
        ses_event("DeliveryDelay", tx.id, 5),
    )
    await drain(rt)
    events = await outcome_events(rt.broker, tx.id)
    by_status = {e.status: [(m.row, m.email) for m in e.messages] for e in events}
    assert by_status == {
        M.DELIVERED: [(2, "user2@example.com"), (3, "user3@example.com")],
        M.BOUNCED: [(4, "user4@example.com")],
    }
    assert all(e.tenant == tx.tenant for e in events)
    # A redelivered batch moves nothing and announces nothing again.
    await publish(rt, ses_event("Delivery", tx.id, 2), ses_event("Bounce", tx.id, 4))
    await drain(rt)
    assert len(await outcome_events(rt.broker, tx.id)) == 2


async def test_both_formats_twice_out_of_order_record_each_event_once(tracker: Runtime) -> None:
    rt = tracker
    tx, messages = sent_transaction(2)
    await insert(rt.store, tx, messages)
    at = datetime.now(UTC)
    # Row 2: its delivery as a configuration-set event and as an identity notification,
    # then its complaint in both formats, all of it twice and shuffled.
    delivery = ses_event("Delivery", tx.id, 2, at=at)
    complaint = ses_event("Complaint", tx.id, 2, at=at + timedelta(seconds=3))
    notices = []
    for source, name in (
        (delivery, "notification_delivery"),
        (complaint, "notification_complaint"),
    ):
        notice = payload(name)
        notice["mail"]["messageId"] = ses_id(tx.id, 2)
        kind = source["eventType"].lower()
        notice[kind] = source[kind]
        notices.append(notice)
    everything = [delivery, complaint, *notices] * 2
    random.Random(5).shuffle(everything)
    for half in (everything[:4], everything[4:]):
        await publish(rt, *half)
        await drain(rt)
    row2 = await message(rt, f"{tx.id}:2")
    assert row2.status == M.COMPLAINED
    assert sorted(e["kind"] for e in row2.events) == ["Complaint", "Delivery"]
    after = await load_tx(rt, tx.id)
    assert interesting(after.counters) == {"total": 2, "sent": 1, "complained": 1}


async def test_unknown_event_types_and_fields_are_kept_and_ignored(tracker: Runtime) -> None:
    rt = tracker
    tx, messages = sent_transaction(1)
    await insert(rt.store, tx, messages)
    novel = ses_event("Delivery", tx.id, 2)
    novel["eventType"] = "Teleport"
    novel["teleport"] = {"destination": "mars"}
    delivery = ses_event("Delivery", tx.id, 2)
    delivery["delivery"]["quantumState"] = "entangled"
    delivery["somethingNew"] = [1, 2, 3]
    await publish(rt, novel, delivery)
    await drain(rt)
    row2 = await message(rt, f"{tx.id}:2")
    assert row2.status == M.DELIVERED
    kept = {e["kind"]: e["details"] for e in row2.events}
    assert kept["Teleport"]["teleport"] == {"destination": "mars"}
    assert kept["Delivery"]["quantumState"] == "entangled"


async def test_messages_without_an_outcome_expire_after_the_timeout(tracker: Runtime) -> None:
    rt = tracker
    # READY_TO_SEND, then SENT as the sender does: the SENT change schedules the expiry.
    tx, messages = sent_transaction(3, status=TxStatus.READY_TO_SEND)
    await insert(rt.store, tx, messages)
    await publish(rt, ses_event("Delivery", tx.id, 2))
    await drain(rt)  # every message is sent: the sending phase is over
    assert (await load_tx(rt, tx.id)).status == TxStatus.SENT
    sent = ActorRunner(
        SentActor(rt.store, rt.broker, delivery_timeout=timedelta(seconds=1)), rt.broker, rt.store
    )
    await sent.run(until_idle=True)
    assert (await load_tx(rt, tx.id)).status == TxStatus.SENT
    expiry = ActorRunner(ExpiryActor(rt.store, rt.broker), rt.broker, rt.store)
    done: Transaction | None = None
    for _ in range(40):
        await expiry.run(until_idle=True)
        done = await load_tx(rt, tx.id)
        if done.status == TxStatus.COMPLETED:
            break
        await asyncio.sleep(0.25)
    assert done is not None
    assert done.status == TxStatus.COMPLETED
    assert await statuses(rt, tx.id) == {2: M.DELIVERED, 3: M.EXPIRED, 4: M.EXPIRED}
    assert interesting(done.counters) == {"total": 3, "delivered": 1, "expired": 2}
    assert done.stats is not None
    assert done.stats["counts"]["expired"] == 2
    expired = [e for e in await outcome_events(rt.broker, tx.id) if e.status == M.EXPIRED]
    assert [m.row for e in expired for m in e.messages] == [3, 4]
    # A late delivery changes nothing any more.
    await publish(rt, ses_event("Delivery", tx.id, 3))
    await drain(rt)
    assert (await statuses(rt, tx.id))[3] == M.EXPIRED


async def test_a_transaction_complete_at_sent_schedules_no_expiry(tracker: Runtime) -> None:
    rt = tracker
    tx, messages = sent_transaction(1, status=TxStatus.READY_TO_SEND)
    await insert(rt.store, tx, messages)
    await publish(rt, ses_event("Delivery", tx.id, 2))
    await drain(rt)  # sent, and with its one outcome in, completed
    assert (await load_tx(rt, tx.id)).status == TxStatus.COMPLETED
    sent = ActorRunner(
        SentActor(rt.store, rt.broker, delivery_timeout=timedelta(seconds=1)), rt.broker, rt.store
    )
    await sent.run(until_idle=True)
    assert (await load_tx(rt, tx.id)).status == TxStatus.COMPLETED
    info = await rt.broker.js.stream_info("SCHEDULES", subjects_filter=Subjects.expiry(tx.id))
    assert not info.state.subjects
