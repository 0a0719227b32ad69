"""SES events against the real broker and store: outcomes, counters, completion."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from services.tracker.events_actor import SesEventsActor
from services.tracker.ses_event import SesEvent, parse_ses_event
from shared.actor import ActorRunner
from shared.documents import Message, Transaction, from_document
from shared.events import SesEvents, TxStatusChanged, decoder
from shared.service import Runtime
from shared.status import MessageStatus as M
from shared.status import TxStatus
from shared.topology import Subjects
from tests.tracker.tracker_builders import insert, payload, sent_transaction, ses_event, ses_id


async def publish(rt: Runtime, *events: dict[str, Any]) -> None:
    await rt.broker.publish(
        Subjects.SES_EVENTS, SesEvents(events=list(events)), msg_id=uuid.uuid4().hex
    )


async def drain(rt: Runtime) -> None:
    runner = ActorRunner(SesEventsActor(rt.store, rt.broker), rt.broker, rt.store)
    await runner.run(until_idle=True)


async def load_tx(rt: Runtime, tx_id: str) -> Transaction:
    return from_document(await rt.store.transactions.find_one({"_id": tx_id}), Transaction)


async def statuses(rt: Runtime, tx_id: str) -> dict[int, M]:
    found = rt.store.messages.find({"transaction_id": tx_id})
    return {m.row: m.status async for m in (from_document(r, Message) async for r in found)}


async def message(rt: Runtime, message_id: str) -> Message:
    return from_document(await rt.store.messages.find_one({"_id": message_id}), Message)


async def completed_events(rt: Runtime, tx_id: str) -> list[TxStatusChanged]:
    subject = Subjects.tx_status("COMPLETED")
    info = await rt.broker.js.stream_info("TX_STATUS", subjects_filter=subject)
    count = (info.state.subjects or {}).get(subject, 0)
    if not count:
        return []
    last = await rt.broker.js.get_last_msg("TX_STATUS", subject)
    assert last.data is not None
    event = decoder(TxStatusChanged).decode(last.data)
    assert event.transaction_id == tx_id
    return [event] * count


def interesting(counters: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counters.items() if v}


async def test_outcomes_move_messages_count_and_complete(tracker: Runtime) -> None:
    rt = tracker
    tx, messages = sent_transaction(4)
    await insert(rt.store, tx, messages)
    at = datetime.now(UTC)

    await publish(
        rt,
        ses_event("Send", tx.id, 4, at=at),
        ses_event("Delivery", tx.id, 2, at=at),
        ses_event("Bounce", tx.id, 3, at=at),
        ses_event("DeliveryDelay", tx.id, 5, at=at),
        ses_event("Bounce", tx.id, 5, at=at + timedelta(seconds=1), bounce_type="Transient"),
    )
    await drain(rt)
    assert await statuses(rt, tx.id) == {2: M.DELIVERED, 3: M.BOUNCED, 4: M.SENT, 5: M.SENT}
    mid = await load_tx(rt, tx.id)
    assert interesting(mid.counters) == {
        "total": 4,
        "sent": 2,
        "delivered": 1,
        "bounced": 1,
    }
    assert mid.status == TxStatus.SENT
    assert [e["kind"] for e in (await message(rt, f"{tx.id}:5")).events] == [
        "DeliveryDelay",
        "Bounce",
    ]
    assert [e["kind"] for e in (await message(rt, f"{tx.id}:4")).events] == ["Send"]
    delivered = (await message(rt, f"{tx.id}:2")).events
    assert len(delivered) == 1
    assert delivered[0]["kind"] == "Delivery"
    assert delivered[0]["ses_message_id"] == ses_id(tx.id, 2)
    assert delivered[0]["details"]["smtpResponse"] == "250 2.6.0 Message received"

    last_batch = (ses_event("Reject", tx.id, 4, at=at), ses_event("Complaint", tx.id, 5, at=at))
    await publish(rt, *last_batch)
    await drain(rt)
    assert await statuses(rt, tx.id) == {
        2: M.DELIVERED,
        3: M.BOUNCED,
        4: M.FAILED,
        5: M.COMPLAINED,
    }
    done = await load_tx(rt, tx.id)
    assert done.status == TxStatus.COMPLETED
    assert interesting(done.counters) == {
        "total": 4,
        "delivered": 1,
        "bounced": 1,
        "failed": 1,
        "complained": 1,
    }
    assert done.stats is not None
    assert interesting(done.stats["counts"]) == {
        "delivered": 1,
        "bounced": 1,
        "failed": 1,
        "complained": 1,
    }
    assert done.stats["rates"]["delivered"] == 0.25
    assert done.stats["rates"]["expired"] == 0.0
    spent = done.stats["seconds_in_status"]
    assert set(spent) == {"ACCEPT", "PROCESSING", "READY_TO_SEND", "SENT"}
    assert spent["ACCEPT"] == spent["PROCESSING"] == spent["READY_TO_SEND"] == 60.0
    assert 7 * 60 - 5 < spent["SENT"] < 7 * 60 + 30
    assert [e.status for e in done.status_history][-2:] == [TxStatus.SENT, TxStatus.COMPLETED]

    # The whole last batch again (a redelivery from another source): nothing changes.
    await publish(rt, *last_batch)
    await drain(rt)
    again = await load_tx(rt, tx.id)
    assert again.counters == done.counters
    assert len(again.status_history) == len(done.status_history)
    events = await completed_events(rt, tx.id)
    assert len(events) == 1
    assert (events[0].old_status, events[0].new_status) == (TxStatus.SENT, TxStatus.COMPLETED)


async def test_the_same_event_twice_counts_once(tracker: Runtime) -> None:
    rt = tracker
    tx, messages = sent_transaction(3)
    await insert(rt.store, tx, messages)
    delivery = ses_event("Delivery", tx.id, 2)
    send = ses_event("Send", tx.id, 2)
    await publish(rt, delivery, delivery, send)
    await publish(rt, delivery, send)
    await drain(rt)
    after = await load_tx(rt, tx.id)
    assert interesting(after.counters) == {"total": 3, "sent": 2, "delivered": 1}
    kinds = sorted(e["kind"] for e in (await message(rt, f"{tx.id}:2")).events)
    assert kinds == ["Delivery", "Send"]
    assert after.status == TxStatus.SENT


async def test_delivery_then_complaint(tracker: Runtime) -> None:
    rt = tracker
    tx, messages = sent_transaction(2)
    await insert(rt.store, tx, messages)
    at = datetime.now(UTC)
    # Row 2: in two batches, in order. Row 3: in one batch, listed out of order.
    await publish(rt, ses_event("Delivery", tx.id, 2, at=at))
    await drain(rt)
    assert (await statuses(rt, tx.id))[2] == M.DELIVERED
    await publish(
        rt,
        ses_event("Complaint", tx.id, 2, at=at + timedelta(seconds=5)),
        ses_event("Complaint", tx.id, 3, at=at + timedelta(seconds=5)),
        ses_event("Delivery", tx.id, 3, at=at),
    )
    await drain(rt)
    assert await statuses(rt, tx.id) == {2: M.COMPLAINED, 3: M.COMPLAINED}
    after = await load_tx(rt, tx.id)
    assert after.counters["delivered"] == 0
    assert after.counters["complained"] == 2
    assert after.counters["sent"] == 0
    assert after.status == TxStatus.COMPLETED
    assert [e["kind"] for e in (await message(rt, f"{tx.id}:3")).events] == [
        "Delivery",
        "Complaint",
    ]


async def test_a_late_delivery_after_a_complaint_is_only_recorded(tracker: Runtime) -> None:
    rt = tracker
    tx, messages = sent_transaction(1)
    await insert(rt.store, tx, messages)
    await publish(rt, ses_event("Complaint", tx.id, 2))
    await drain(rt)
    await publish(rt, ses_event("Delivery", tx.id, 2))
    await drain(rt)
    after = await load_tx(rt, tx.id)
    assert interesting(after.counters) == {"total": 1, "complained": 1}
    assert (await statuses(rt, tx.id)) == {2: M.COMPLAINED}
    assert len((await message(rt, f"{tx.id}:2")).events) == 2


async def test_outcomes_before_the_senders_record_settle_and_complete(tracker: Runtime) -> None:
    rt = tracker
    # The sender has not recorded its sends: the transaction is READY_TO_SEND, its messages
    # SENDING, when their outcomes arrive. The last one ends the sending phase (SENT), and
    # with every outcome in, the transaction completes.
    tx, messages = sent_transaction(2, status=TxStatus.READY_TO_SEND, message_status=M.SENDING)
    await insert(rt.store, tx, messages)
    await publish(rt, ses_event("Delivery", tx.id, 2), ses_event("Bounce", tx.id, 3))
    await drain(rt)
    after = await load_tx(rt, tx.id)
    assert [e.status for e in after.status_history][-2:] == [TxStatus.SENT, TxStatus.COMPLETED]
    assert interesting(after.counters) == {"total": 2, "delivered": 1, "bounced": 1}
    assert after.stats is not None
    assert after.stats["counts"]["bounced"] == 1
    assert len(await completed_events(rt, tx.id)) == 1


async def test_identity_notifications_find_the_message_by_ses_id(tracker: Runtime) -> None:
    rt = tracker
    tx, messages = sent_transaction(2)
    await insert(rt.store, tx, messages)
    bounce = payload("notification_bounce")
    bounce["mail"]["messageId"] = ses_id(tx.id, 2)
    delivery = payload("notification_delivery")
    delivery["mail"]["messageId"] = ses_id(tx.id, 3)
    await publish(rt, bounce, delivery)
    await drain(rt)
    assert await statuses(rt, tx.id) == {2: M.BOUNCED, 3: M.DELIVERED}
    assert (await load_tx(rt, tx.id)).status == TxStatus.COMPLETED


async def test_events_for_unknown_messages_are_dropped(tracker: Runtime) -> None:
    rt = tracker
    tx, messages = sent_transaction(1)
    await insert(rt.store, tx, messages)
    unknown_ses = payload("notification_delivery")
    await publish(
        rt,
        ses_event("Delivery", "tx-nobody", 2),
        ses_event("Delivery", tx.id, 99),
        unknown_ses,
        {"neither": "an event"},
        ses_event("Delivery", tx.id, 2),
    )
    await drain(rt)
    assert await statuses(rt, tx.id) == {2: M.DELIVERED}
    assert await rt.store.messages.count_documents({}) == 1
    assert await rt.store.dead_letters.count_documents({}) == 0
    info = await rt.broker.js.stream_info("SES_EVENTS")
    assert info.state.messages == 0  # acknowledged, not left for redelivery


async def read_before_the_other_path(
    rt: Runtime,
) -> tuple[Transaction, SesEventsActor, dict[Any, list[SesEvent]], dict[str, Any]]:
    """A batch reads a SENT message for its Send and Delivery events; then the other path
    adds the Send event. The batch's actor, its events by message and what it read."""
    tx, messages = sent_transaction(1)
    await insert(rt.store, tx, messages)
    send, delivery = (parse_ses_event(ses_event(kind, tx.id, 2)) for kind in ("Send", "Delivery"))
    batch, other = SesEventsActor(rt.store, rt.broker), SesEventsActor(rt.store, rt.broker)
    by_message, _ = await batch._find_messages([send, delivery])
    known = await batch._read(by_message)
    other_sees, _ = await other._find_messages([send])
    await other._record(other_sees, await other._read(other_sees))
    return tx, batch, by_message, known


async def test_events_the_other_path_added_meanwhile_are_kept_once(tracker: Runtime) -> None:
    # The two paths (SQS and the SNS webhook) may carry the same events at once: between
    # one batch reading a message and adding its events, the other adds one of them.
    rt = tracker
    tx, batch, by_message, known = await read_before_the_other_path(rt)

    await batch._record(by_message, known)

    assert [e["kind"] for e in (await message(rt, f"{tx.id}:2")).events] == ["Send", "Delivery"]


async def test_a_move_records_its_events_meanwhile_added_by_the_other_path(
    tracker: Runtime,
) -> None:
    # The move's own write carries the message's events, where none of them is there yet;
    # the other path added one meanwhile: the move misses, reads again, and moves the
    # message with the event still missing.
    rt = tracker
    tx, batch, by_message, known = await read_before_the_other_path(rt)

    moved, now = await batch._apply(by_message, known)
    assert await batch._record(by_message, now) == 0  # nothing left to add

    assert moved == 1
    assert await statuses(rt, tx.id) == {2: M.DELIVERED}
    assert [e["kind"] for e in (await message(rt, f"{tx.id}:2")).events] == ["Send", "Delivery"]
    assert interesting((await load_tx(rt, tx.id)).counters) == {"total": 1, "delivered": 1}


async def test_moved_messages_get_their_events_in_the_same_write(tracker: Runtime) -> None:
    rt = tracker
    tx, messages = sent_transaction(3)
    await insert(rt.store, tx, messages)
    await publish(
        rt,
        *(ses_event(kind, tx.id, row) for row in (2, 3, 4) for kind in ("Send", "Delivery")),
    )
    before = rt.store.commands.by_kind["update messages"]

    await drain(rt)

    # One write per message, all in one command: the move and its events together.
    assert rt.store.commands.by_kind["update messages"] - before == 1
    assert await statuses(rt, tx.id) == {2: M.DELIVERED, 3: M.DELIVERED, 4: M.DELIVERED}
    for row in (2, 3, 4):
        kinds = [e["kind"] for e in (await message(rt, f"{tx.id}:{row}")).events]
        assert kinds == ["Send", "Delivery"]


async def test_a_batchs_groups_move_in_one_store_transaction(tracker: Runtime) -> None:
    # Three groups of one transaction: SENT -> DELIVERED, SENT -> BOUNCED, and SENDING ->
    # DELIVERED (an outcome ahead of the sender's record): one write of the counters.
    rt = tracker
    tx, messages = sent_transaction(3)
    messages[2] = msgspec.structs.replace(messages[2], status=M.SENDING)
    tx = msgspec.structs.replace(tx, counters={"total": 3, "sent": 2, "sending": 1})
    await insert(rt.store, tx, messages)
    await publish(
        rt,
        ses_event("Delivery", tx.id, 2),
        ses_event("Bounce", tx.id, 3),
        ses_event("Delivery", tx.id, 4),
    )
    before = dict(rt.store.commands.by_kind)

    await drain(rt)

    def spent(kind: str) -> int:
        return rt.store.commands.by_kind[kind] - before.get(kind, 0)

    assert (spent("commitTransaction"), spent("abortTransaction")) == (1, 0)
    assert await statuses(rt, tx.id) == {2: M.DELIVERED, 3: M.BOUNCED, 4: M.DELIVERED}
    after = await load_tx(rt, tx.id)
    assert interesting(after.counters) == {"total": 3, "delivered": 2, "bounced": 1}
    assert after.status == TxStatus.COMPLETED
