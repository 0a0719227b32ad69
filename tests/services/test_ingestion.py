"""Ingest against the real stack: the CSV read back from S3 (moto), messages, batches and
row errors in the store, the hand-over to the scheduler on NATS."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec
import pytest

from services.ingest.ingestion import IngestActor
from shared.aws import open_s3
from shared.documents import (
    S3Location,
    StatusEntry,
    Suppression,
    Template,
    Transaction,
    from_document,
    suppression_id,
    to_document,
)
from shared.events import TxAccepted, TxIngested, decoder
from shared.records import load_transaction
from shared.service import Runtime
from shared.settings import IngestSettings, ServiceSettings, load_settings
from shared.status import TxStatus
from shared.topology import Subjects
from stack.launcher import StackInfo
from tests.conftest import settings_for

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client


@pytest.fixture
async def s3(settings: ServiceSettings) -> AsyncIterator[S3Client]:
    async with AsyncExitStack() as exits:
        yield await open_s3(exits, settings)


@pytest.fixture
async def ingest(
    runtime: Runtime, s3: S3Client, stack_info: StackInfo, db_name: str
) -> IngestActor:
    for stream in ("TX_INGESTED", "TX_STATUS"):
        await runtime.broker.js.purge_stream(stream)
    settings = load_settings(IngestSettings, settings_for(stack_info, db_name, BATCH_SIZE="3"))
    return IngestActor(runtime.store, runtime.broker, s3, settings)


async def submit(
    rt: Runtime,
    s3: S3Client,
    bucket: str,
    body: bytes,
    *,
    html: str = "<p>Hi {{ name }}</p>",
    send_at: datetime | None = None,
) -> Transaction:
    """What the gateway leaves behind: the file in S3, a template, a transaction in ACCEPT."""
    now = datetime.now(UTC)
    tx_id = uuid.uuid4().hex
    key = f"uploads/test/{tx_id}.csv"
    await s3.put_object(Bucket=bucket, Key=key, Body=body)
    template = Template(
        id=uuid.uuid4().hex,
        tenant="t",
        name="n",
        subject="Hello",
        html=html,
        placeholders=["name"] if "name" in html else [],
        created_at=now,
    )
    await rt.store.templates.insert_one(to_document(template))
    tx = Transaction(
        id=tx_id,
        tenant="t",
        status=TxStatus.ACCEPT,
        template_id=template.id,
        source=S3Location(bucket=bucket, key=key),
        send_at=send_at,
        status_history=[StatusEntry(status=TxStatus.ACCEPT, at=now)],
        created_at=now,
        updated_at=now,
    )
    await rt.store.transactions.insert_one(to_document(tx))
    return tx


async def docs(rt: Runtime, collection: str, tx_id: str) -> list[dict[str, Any]]:
    return [d async for d in rt.store.collection(collection).find({"transaction_id": tx_id})]


CSV = (
    b"\xef\xbb\xbfEmail;Name\r\n"
    b"a@example.org;Ann\r\n"
    b"bad-address;Bob\r\n"
    b"c@example.org;Cy\r\n"
    b"\r\n"
    b'd@example.org;"D\r\nE"\r\n'
    b";;\r\n"
    b"e@example.org;\r\n"
    b"f@example.org;Fay\r\n"
)


async def test_rows_become_messages_batches_and_errors(
    runtime: Runtime, s3: S3Client, ingest: IngestActor, stack_info: StackInfo
) -> None:
    tx = await submit(runtime, s3, stack_info.s3_bucket, CSV)

    await ingest.handle(TxAccepted(transaction_id=tx.id))

    after = await load_transaction(runtime.store, tx.id)
    assert after.status == TxStatus.PROCESSING
    assert after.counters == {
        "total": 4,
        "invalid": 2,
        "suppressed": 0,
        "ready_to_send": 4,
    }
    assert after.ingest_progress == {"valid": 4, "invalid": 2}
    assert after.batches == 2
    messages = sorted(await docs(runtime, "messages", tx.id), key=lambda m: m["row"])
    assert [(m["_id"], m["email"], m["data"], m["status"]) for m in messages] == [
        (f"{tx.id}:2", "a@example.org", {"name": "Ann"}, "READY_TO_SEND"),
        (f"{tx.id}:4", "c@example.org", {"name": "Cy"}, "READY_TO_SEND"),
        (f"{tx.id}:6", "d@example.org", {"name": "D\r\nE"}, "READY_TO_SEND"),
        (f"{tx.id}:9", "f@example.org", {"name": "Fay"}, "READY_TO_SEND"),
    ]
    batches = sorted(await docs(runtime, "batches", tx.id), key=lambda b: b["number"])
    assert [b["rows"] for b in batches] == [[2, 4, 6], [9]]
    errors = sorted(await docs(runtime, "row_errors", tx.id), key=lambda e: e["error"]["row"])
    assert [(e["error"]["row"], e["error"]["code"]) for e in errors] == [
        (3, "INVALID_EMAIL"),
        (8, "MISSING_PLACEHOLDER_VALUE"),
    ]
    handed_over = await runtime.broker.js.get_last_msg("TX_INGESTED", Subjects.TX_INGESTED)
    assert decoder(TxIngested).decode(handed_over.data) == TxIngested(
        transaction_id=tx.id, batches=2
    )
    assert [e.status for e in after.status_history] == [TxStatus.ACCEPT, TxStatus.PROCESSING]


async def test_a_redelivery_adds_nothing(
    runtime: Runtime, s3: S3Client, ingest: IngestActor, stack_info: StackInfo
) -> None:
    tx = await submit(runtime, s3, stack_info.s3_bucket, CSV)
    await ingest.handle(TxAccepted(transaction_id=tx.id))
    # The sender has started moving counters when the same event comes again.
    await runtime.store.transactions.update_one(
        {"_id": tx.id}, {"$inc": {"counters.ready_to_send": -1, "counters.sending": 1}}
    )
    await ingest.handle(TxAccepted(transaction_id=tx.id))

    after = await load_transaction(runtime.store, tx.id)
    assert after.counters["ready_to_send"] == 3
    assert after.counters["sending"] == 1
    assert len(await docs(runtime, "messages", tx.id)) == 4
    assert len(await docs(runtime, "row_errors", tx.id)) == 2
    info = await runtime.broker.js.stream_info("TX_INGESTED")
    assert info.state.messages == 1  # the second hand-over was deduplicated by its id


async def test_a_half_done_pass_is_completed_without_duplicates(
    runtime: Runtime, s3: S3Client, ingest: IngestActor, stack_info: StackInfo
) -> None:
    tx = await submit(runtime, s3, stack_info.s3_bucket, CSV)
    await ingest.handle(TxAccepted(transaction_id=tx.id))
    # A crash before the counters were set: the next pass must redo only that.
    await runtime.store.transactions.update_one(
        {"_id": tx.id}, {"$unset": {"counters": ""}, "$set": {"batches": 0}}
    )
    await ingest.handle(TxAccepted(transaction_id=tx.id))

    after = await load_transaction(runtime.store, tx.id)
    assert after.counters["total"] == 4
    assert after.batches == 2
    assert len(await docs(runtime, "messages", tx.id)) == 4
    assert len(await docs(runtime, "batches", tx.id)) == 2


DUPLICATES = (
    b"email,name\r\n"
    b"a@example.org,Ann\r\n"
    b"b@example.org,Bob\r\n"
    b"a@EXAMPLE.org,Ann again\r\n"
    b"c@example.org,Cy\r\n"
    b"b@example.org,Bob again\r\n"
)


async def test_a_duplicate_recipient_is_a_row_error_and_a_rerun_agrees(
    runtime: Runtime, s3: S3Client, ingest: IngestActor, stack_info: StackInfo
) -> None:
    tx = await submit(runtime, s3, stack_info.s3_bucket, DUPLICATES)
    await ingest.handle(TxAccepted(transaction_id=tx.id))
    # A crash before the counters were set: the second pass must find the same duplicates.
    await runtime.store.transactions.update_one({"_id": tx.id}, {"$unset": {"counters": ""}})
    await ingest.handle(TxAccepted(transaction_id=tx.id))

    after = await load_transaction(runtime.store, tx.id)
    assert (after.counters["total"], after.counters["invalid"]) == (3, 2)
    messages = sorted(await docs(runtime, "messages", tx.id), key=lambda m: m["row"])
    assert [(m["row"], m["email"], m["data"]) for m in messages] == [
        (2, "a@example.org", {"name": "Ann"}),
        (3, "b@example.org", {"name": "Bob"}),
        (5, "c@example.org", {"name": "Cy"}),
    ]
    errors = sorted(await docs(runtime, "row_errors", tx.id), key=lambda e: e["error"]["row"])
    assert [(e["error"]["row"], e["error"]["code"]) for e in errors] == [
        (4, "DUPLICATE_RECIPIENT"),
        (6, "DUPLICATE_RECIPIENT"),
    ]


async def test_future_send_at_makes_scheduled_messages(
    runtime: Runtime, s3: S3Client, ingest: IngestActor, stack_info: StackInfo
) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    tx = await submit(runtime, s3, stack_info.s3_bucket, CSV, send_at=later)
    await ingest.handle(TxAccepted(transaction_id=tx.id))
    after = await load_transaction(runtime.store, tx.id)
    assert after.counters["scheduled"] == 4
    assert {m["status"] for m in await docs(runtime, "messages", tx.id)} == {"SCHEDULED"}


@pytest.mark.parametrize(
    ("body", "html", "code"),
    [
        (b"name,city\r\nAnn,Paris\r\n", "<p>{{ name }}</p>", "MISSING_EMAIL_COLUMN"),
        (b"email,email\r\na@example.org,b@example.org\r\n", "<p>x</p>", "DUPLICATE_COLUMN"),
        (b"email\r\na@example.org\r\n", "<p>{{ name }}</p>", "MISSING_PLACEHOLDER_COLUMN"),
        (b"email,name\r\nnope,Ann\r\n,Bob\r\n", "<p>{{ name }}</p>", "NO_VALID_ROWS"),
        (b"email,name\r\na@example.org,Ren\xe9\r\n", "<p>{{ name }}</p>", "CSV_PARSING_ERROR"),
        (b"", "<p>x</p>", "EMPTY_FILE"),
        (b"\r\n\r\n", "<p>x</p>", "EMPTY_FILE"),
    ],
)
async def test_a_file_that_cannot_be_sent_fails_the_transaction(
    runtime: Runtime,
    s3: S3Client,
    ingest: IngestActor,
    stack_info: StackInfo,
    body: bytes,
    html: str,
    code: str,
) -> None:
    tx = await submit(runtime, s3, stack_info.s3_bucket, body, html=html)
    await ingest.handle(TxAccepted(transaction_id=tx.id))
    raw = await runtime.store.transactions.find_one({"_id": tx.id})
    after = from_document(raw, Transaction)
    assert after.status == TxStatus.FAILED
    assert after.failure is not None
    assert after.failure["code"] == code
    assert after.failure["message"]
    assert [e.status for e in after.status_history][-1] == TxStatus.FAILED
    assert (await runtime.broker.js.stream_info("TX_INGESTED")).state.messages == 0


def _with(ingest: IngestActor, **limits: int) -> IngestActor:
    """Another actor on the same clients, with other settings."""
    settings = msgspec.structs.replace(ingest.settings, **limits)
    return IngestActor(ingest.store, ingest.broker, ingest.s3, settings)


# Rows 2-12: ten valid rows and an invalid one (row 5). With batch_size 2 and max_rows 7,
# three batches are written (rows 2-8, row 5 an error) before row 9 breaks the limit.
TEN_ROWS = b"email,name\r\n" + b"".join(
    b"nope,Bad\r\n" if n == 5 else b"u%d@example.org,N%d\r\n" % (n, n) for n in range(2, 13)
)


async def test_a_limit_found_after_some_batches_rolls_them_back(
    runtime: Runtime, s3: S3Client, ingest: IngestActor, stack_info: StackInfo
) -> None:
    limited = _with(ingest, batch_size=2, max_rows=7)
    tx = await submit(runtime, s3, stack_info.s3_bucket, TEN_ROWS)

    await limited.handle(TxAccepted(transaction_id=tx.id))

    after = await load_transaction(runtime.store, tx.id)
    assert after.status == TxStatus.FAILED
    assert after.failure == {
        "code": "TOO_MANY_ROWS",
        "message": "Row 9 is past the 7 rows a file may have; split the file into smaller "
        "ones and upload each",
        "details": {"row": 9, "max_rows": 7},
    }
    assert after.batches == 0
    assert "total" not in after.counters
    assert await docs(runtime, "messages", tx.id) == []
    assert await docs(runtime, "batches", tx.id) == []
    # The row errors stay: they explain what was read.
    errors = await docs(runtime, "row_errors", tx.id)
    assert [(e["error"]["row"], e["error"]["code"]) for e in errors] == [(5, "INVALID_EMAIL")]
    assert errors[0]["fields"] == ["nope", "Bad"]
    assert after.columns == ["email", "name"]
    failed = await runtime.broker.js.get_last_msg("TX_STATUS", Subjects.tx_status(TxStatus.FAILED))
    assert b"TOO_MANY_ROWS" in failed.data
    assert (await runtime.broker.js.stream_info("TX_INGESTED")).state.messages == 0


async def test_a_redelivery_after_a_crash_mid_rollback_finishes_it(
    runtime: Runtime, s3: S3Client, ingest: IngestActor, stack_info: StackInfo
) -> None:
    tx = await submit(runtime, s3, stack_info.s3_bucket, TEN_ROWS)
    # What a crash leaves: the pass wrote its batches, moved the transaction to FAILED
    # recording how many, removed the first batch and died.
    await _with(ingest, batch_size=2).handle(TxAccepted(transaction_id=tx.id))
    written = await load_transaction(runtime.store, tx.id)
    assert written.batches == 5
    await runtime.store.transactions.update_one(
        {"_id": tx.id},
        {"$set": {"status": TxStatus.FAILED}, "$unset": {"counters": ""}},
    )
    await runtime.store.messages.delete_many({"_id": {"$in": [f"{tx.id}:2", f"{tx.id}:3"]}})
    await runtime.store.batches.delete_one({"_id": f"{tx.id}:0"})
    assert len(await docs(runtime, "messages", tx.id)) == 8

    await ingest.handle(TxAccepted(transaction_id=tx.id))

    assert await docs(runtime, "messages", tx.id) == []
    assert await docs(runtime, "batches", tx.id) == []
    after = await load_transaction(runtime.store, tx.id)
    assert (after.status, after.batches) == (TxStatus.FAILED, 0)
    # Once more: nothing left to do, nothing done.
    await ingest.handle(TxAccepted(transaction_id=tx.id))
    assert await load_transaction(runtime.store, tx.id) == after


async def test_a_parse_error_after_some_batches_rolls_them_back(
    runtime: Runtime, s3: S3Client, ingest: IngestActor, stack_info: StackInfo
) -> None:
    # Python's csv module refuses a field over 131,072 characters: a file error.
    body = TEN_ROWS + b"z@example.org," + b"x" * 131_073 + b"\r\n"
    tx = await submit(runtime, s3, stack_info.s3_bucket, body)
    await _with(ingest, batch_size=2).handle(TxAccepted(transaction_id=tx.id))
    after = await load_transaction(runtime.store, tx.id)
    assert after.failure is not None
    assert after.failure["code"] == "CSV_PARSING_ERROR"
    assert after.failure["message"].startswith("Row 13: field larger than field limit")
    assert await docs(runtime, "messages", tx.id) == []
    assert await docs(runtime, "batches", tx.id) == []


async def test_a_header_over_the_column_limit_fails_the_file(
    runtime: Runtime, s3: S3Client, ingest: IngestActor, stack_info: StackInfo
) -> None:
    tx = await submit(runtime, s3, stack_info.s3_bucket, b"email,name,a,b\r\nu@x.org,N,1,2\r\n")
    await _with(ingest, max_columns=3).handle(TxAccepted(transaction_id=tx.id))
    after = await load_transaction(runtime.store, tx.id)
    assert after.status == TxStatus.FAILED
    assert after.failure is not None
    assert (after.failure["code"], after.failure["details"]) == (
        "TOO_MANY_COLUMNS",
        {"columns": 4, "max_columns": 3},
    )


async def test_an_over_long_field_fails_only_its_row(
    runtime: Runtime, s3: S3Client, ingest: IngestActor, stack_info: StackInfo
) -> None:
    body = b'Email,Name\r\na@example.org,Ann\r\nb@example.org,"Long, long\r\nname"\r\n'
    tx = await submit(runtime, s3, stack_info.s3_bucket, body)
    await _with(ingest, max_field_chars=14).handle(TxAccepted(transaction_id=tx.id))
    after = await load_transaction(runtime.store, tx.id)
    assert (after.status, after.counters["total"], after.counters["invalid"]) == (
        TxStatus.PROCESSING,
        1,
        1,
    )
    assert after.columns == ["Email", "Name"]
    [error] = await docs(runtime, "row_errors", tx.id)
    assert error["error"]["code"] == "FIELD_TOO_LONG"
    assert (error["error"]["row"], error["error"]["field"]) == (3, "name")
    assert error["fields"] == ["b@example.org", "Long, long\r\nname"]


async def test_errors_are_written_as_they_come_in_a_mostly_invalid_file(
    runtime: Runtime, s3: S3Client, ingest: IngestActor, stack_info: StackInfo
) -> None:
    invalid = b"".join(b"bad%d,N\r\n" % n for n in range(7))
    body = b"email,name\r\n" + invalid + b"ok@example.org,N\r\n"
    tx = await submit(runtime, s3, stack_info.s3_bucket, body)
    await ingest.handle(TxAccepted(transaction_id=tx.id))  # batch_size 3
    after = await load_transaction(runtime.store, tx.id)
    assert (after.counters["total"], after.counters["invalid"]) == (1, 7)
    errors = sorted(await docs(runtime, "row_errors", tx.id), key=lambda e: e["error"]["row"])
    assert [e["fields"] for e in errors] == [[f"bad{n}", "N"] for n in range(7)]


async def test_suppressed_addresses_become_suppressed_messages(
    runtime: Runtime, s3: S3Client, ingest: IngestActor, stack_info: StackInfo
) -> None:
    now = datetime.now(UTC)
    for tenant, email in (("t", "C@example.org"), ("other-tenant", "a@example.org")):
        suppression = Suppression(
            id=suppression_id(tenant, email),
            tenant=tenant,
            email=email,
            reason="bounce",
            created_at=now,
        )
        await runtime.store.suppressions.insert_one(to_document(suppression))
    tx = await submit(runtime, s3, stack_info.s3_bucket, CSV)

    await ingest.handle(TxAccepted(transaction_id=tx.id))

    after = await load_transaction(runtime.store, tx.id)
    # Another tenant's list does not apply; this tenant's does, whatever the case.
    statuses = {m["email"]: m["status"] for m in await docs(runtime, "messages", tx.id)}
    assert statuses["c@example.org"] == "SUPPRESSED"
    assert statuses["a@example.org"] == "READY_TO_SEND"
    assert after.counters["total"] == 4
    assert after.counters["suppressed"] == 1
    assert after.counters["ready_to_send"] == 3
