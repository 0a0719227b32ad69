"""Ingest's side of per-row send times: rows by slot into their own batches, the slot
documents the scheduler reads, the statuses and counters, the row errors of bad times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from services.ingest.ingestion import IngestActor
from shared.documents import Slot, from_document
from shared.events import TxAccepted
from shared.records import load_transaction
from shared.schedule import IMMEDIATE, fire_time, slot_of
from shared.service import Runtime
from shared.status import TxStatus
from stack.launcher import StackInfo
from tests.services.test_ingestion import docs, ingest, s3, submit

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

__all__ = ["ingest", "s3"]  # fixtures, used by name

PARIS = ZoneInfo("Europe/Paris")


def _minute_start(offset: timedelta) -> datetime:
    """The start of a UTC minute ``offset`` from now, so rows a few seconds apart share it."""
    return (datetime.now(UTC) + offset).replace(second=0, microsecond=0)


async def _slots(rt: Runtime, tx_id: str) -> dict[str, Slot]:
    return {s.slot: s for s in (from_document(d, Slot) for d in await docs(rt, "slots", tx_id))}


async def test_rows_are_grouped_by_slot_into_their_own_batches(
    runtime: Runtime, s3: S3Client, ingest: IngestActor, stack_info: StackInfo
) -> None:
    hour = _minute_start(timedelta(hours=2))
    later = hour + timedelta(seconds=20, milliseconds=250)
    local = (hour + timedelta(days=1)).astimezone(PARIS).replace(tzinfo=None)
    rows = [
        ("a@example.org", "", ""),  # the transaction's time: none, so at once
        ("b@example.org", hour.isoformat(), ""),
        ("c@example.org", "", ""),
        ("d@example.org", later.isoformat().replace("+00:00", "Z"), ""),
        ("e@example.org", local.isoformat(timespec="minutes"), "Europe/Paris"),
        ("f@example.org", hour.isoformat(), ""),
        ("g@example.org", "2030-01-01T09:00", ""),  # local, and no zone
        ("h@example.org", "09:00 tomorrow", ""),
        ("i@example.org", "", "Mars/Olympus"),
        ("j@example.org", (datetime.now(UTC) - timedelta(hours=1)).isoformat(), ""),
        ("k@example.org", (datetime.now(UTC) + timedelta(days=31)).isoformat(), ""),
        ("l@example.org", (datetime.now(UTC) - timedelta(minutes=2)).isoformat(), ""),
    ]
    body = "email,name,send_at,timezone\r\n" + "".join(
        f"{email},N,{at},{zone}\r\n" for email, at, zone in rows
    )
    tx = await submit(runtime, s3, stack_info.s3_bucket, body.encode())

    await ingest.handle(TxAccepted(transaction_id=tx.id))

    after = await load_transaction(runtime.store, tx.id)
    assert after.status == TxStatus.PROCESSING
    errors = {e["error"]["row"]: e["error"] for e in await docs(runtime, "row_errors", tx.id)}
    assert {row: e["code"] for row, e in errors.items()} == {
        8: "INVALID_SEND_AT",
        9: "INVALID_SEND_AT",
        10: "INVALID_TIMEZONE",
        11: "SEND_AT_IN_PAST",
        12: "SEND_AT_TOO_FAR",
    }
    assert errors[10]["field"] == "timezone"
    assert errors[11]["field"] == "send_at"
    assert errors[11]["value"] == rows[9][1]

    tomorrow = hour + timedelta(days=1)
    slots = await _slots(runtime, tx.id)
    assert set(slots) == {IMMEDIATE, slot_of(hour), slot_of(tomorrow)}
    # The latest time of the slot, rounded up to the second.
    assert slots[slot_of(hour)].fire_at == fire_time(later)
    assert slots[slot_of(tomorrow)].fire_at == tomorrow
    batches = {b["number"]: b for b in await docs(runtime, "batches", tx.id)}
    by_slot = {
        name: sorted(row for number in slot.batches for row in batches[number]["rows"])
        for name, slot in slots.items()
    }
    # Rows 2, 4 without a time and row 13 two minutes back: at once.
    assert by_slot == {IMMEDIATE: [2, 4, 13], slot_of(hour): [3, 5, 7], slot_of(tomorrow): [6]}
    assert all(batches[n]["slot"] == name for name, s in slots.items() for n in s.batches)

    messages = {m["row"]: m for m in await docs(runtime, "messages", tx.id)}
    assert {row: m["status"] for row, m in messages.items()} == {
        2: "READY_TO_SEND",
        4: "READY_TO_SEND",
        13: "READY_TO_SEND",
        3: "SCHEDULED",
        5: "SCHEDULED",
        7: "SCHEDULED",
        6: "SCHEDULED",
    }
    assert messages[5]["send_at"] == later.replace(microsecond=250_000)
    assert messages[6]["send_at"] == tomorrow
    assert "send_at" not in messages[2]
    assert messages[6]["data"] == {"name": "N", "send_at": rows[4][1], "timezone": "Europe/Paris"}

    assert after.counters["scheduled"] == 4
    assert after.counters["ready_to_send"] == 3
    assert after.schedule is not None
    assert (after.schedule.slots, after.schedule.first_at, after.schedule.last_at) == (
        3,
        fire_time(later),
        tomorrow,
    )


async def test_the_transaction_time_applies_to_rows_without_their_own(
    runtime: Runtime, s3: S3Client, ingest: IngestActor, stack_info: StackInfo
) -> None:
    send_at = _minute_start(timedelta(hours=1))
    own = send_at + timedelta(hours=1)
    body = f"email,name,send_at\r\na@example.org,A,\r\nb@example.org,B,{own.isoformat()}\r\n"
    tx = await submit(runtime, s3, stack_info.s3_bucket, body.encode(), send_at=send_at)

    await ingest.handle(TxAccepted(transaction_id=tx.id))

    slots = await _slots(runtime, tx.id)
    assert {name: s.fire_at for name, s in slots.items()} == {
        slot_of(send_at): send_at,
        slot_of(own): own,
    }
    after = await load_transaction(runtime.store, tx.id)
    assert after.counters["scheduled"] == 2
    assert "ready_to_send" not in after.counters


async def test_many_open_slots_flush_partial_batches(
    runtime: Runtime, s3: S3Client, ingest: IngestActor, stack_info: StackInfo
) -> None:
    # Batches of 3 (the fixture); 100 minutes, each row in the next one, twice over: more
    # slots open at once than the writer keeps, so it writes some before they are full.
    start = _minute_start(timedelta(hours=1))
    times = [start + timedelta(minutes=i % 100) for i in range(200)]
    body = "email,name,send_at\r\n" + "".join(
        f"r{i}@example.org,N,{at.isoformat()}\r\n" for i, at in enumerate(times)
    )
    tx = await submit(runtime, s3, stack_info.s3_bucket, body.encode())

    await ingest.handle(TxAccepted(transaction_id=tx.id))

    slots = await _slots(runtime, tx.id)
    assert len(slots) == 100
    batches = {b["number"]: b for b in await docs(runtime, "batches", tx.id)}
    assert sorted(n for s in slots.values() for n in s.batches) == sorted(batches)
    rows_of = {
        name: sorted(r for n in s.batches for r in batches[n]["rows"]) for name, s in slots.items()
    }
    # Every row in the batch of its own slot, exactly once.
    assert rows_of == {slot_of(start + timedelta(minutes=m)): [m + 2, m + 102] for m in range(100)}
    assert all(len(b["rows"]) <= 3 for b in batches.values())
    after = await load_transaction(runtime.store, tx.id)
    assert after.counters["scheduled"] == 200
    assert after.batches == len(batches)


async def test_a_transaction_cancelled_before_ingest_is_not_read(
    runtime: Runtime, s3: S3Client, ingest: IngestActor, stack_info: StackInfo
) -> None:
    tx = await submit(runtime, s3, stack_info.s3_bucket, b"email,name\r\na@example.org,A\r\n")
    await runtime.store.transactions.update_one(
        {"_id": tx.id}, {"$set": {"cancel_requested_at": datetime.now(UTC)}}
    )

    await ingest.handle(TxAccepted(transaction_id=tx.id))

    after = await load_transaction(runtime.store, tx.id)
    assert [e.status for e in after.status_history] == [TxStatus.ACCEPT, TxStatus.CANCELLED]
    assert after.columns == []  # the file was never opened
    assert await docs(runtime, "messages", tx.id) == []
