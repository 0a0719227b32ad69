"""Ingest killed with SIGKILL in the middle of a file: the redelivered job resumes and the
result is identical to an uninterrupted run (issue 3, crash safety). A real process is
killed; nothing is simulated."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from services.ingest.ingestion import IngestActor
from shared.aws import open_s3
from shared.documents import S3Location, StatusEntry, Template, Transaction, to_document
from shared.events import TxAccepted
from shared.records import load_transaction
from shared.service import Runtime
from shared.settings import IngestSettings, ServiceSettings, load_settings
from shared.status import TxStatus
from shared.topology import Subjects
from stack.launcher import StackInfo
from stack.processes import ProcessGroup
from tests.conftest import settings_for

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

pytestmark = pytest.mark.timeout(180)

ROWS = 12_000


def recipients(rows: int) -> bytes:
    """Valid rows, with invalid addresses, empty placeholders and duplicates among them."""
    rnd = random.Random(3)
    lines = ["email,name"]
    for i in range(rows):
        email = f"user{i}@example.org"
        name = f"N{i}"
        if i % 97 == 5:
            email = "not-an-address"
        elif i % 89 == 7:
            name = ""
        elif i % 83 == 11 and i > 100:
            email = f"user{rnd.randrange(i)}@example.org"
        lines.append(f"{email},{name}")
    return ("\r\n".join(lines) + "\r\n").encode()


@pytest.fixture
async def s3(settings: ServiceSettings) -> AsyncIterator[S3Client]:
    async with AsyncExitStack() as exits:
        yield await open_s3(exits, settings)


@pytest.fixture
def ingest_process(
    stack_info: StackInfo, db_name: str, tmp_path: Path
) -> Iterator[tuple[ProcessGroup, dict[str, str]]]:
    group = ProcessGroup(tmp_path)
    env = {**os.environ, **settings_for(stack_info, db_name, LOG_FORMAT="json")}
    yield group, env
    group.stop_all()


async def accepted(rt: Runtime, s3: S3Client, bucket: str, body: bytes) -> Transaction:
    now = datetime.now(UTC)
    tx_id = uuid.uuid4().hex
    key = f"uploads/crash/{tx_id}.csv"
    await s3.put_object(Bucket=bucket, Key=key, Body=body)
    template = Template(
        id=uuid.uuid4().hex,
        tenant="t",
        name="n",
        subject="Hi",
        html="<p>{{ name }}</p>",
        placeholders=["name"],
        created_at=now,
    )
    await rt.store.templates.insert_one(to_document(template))
    tx = Transaction(
        id=tx_id,
        tenant="t",
        status=TxStatus.ACCEPT,
        template_id=template.id,
        source=S3Location(bucket=bucket, key=key),
        status_history=[StatusEntry(status=TxStatus.ACCEPT, at=now)],
        created_at=now,
        updated_at=now,
    )
    await rt.store.transactions.insert_one(to_document(tx))
    return tx


async def outcome(rt: Runtime, tx_id: str) -> dict[str, Any]:
    """Everything ingest leaves behind, without the transaction id in it."""
    tx = await load_transaction(rt.store, tx_id)
    messages = [
        (m["row"], m["email"], m["data"]["name"], m["batch"], m["status"])
        async for m in rt.store.messages.find({"transaction_id": tx_id})
    ]
    batches = [
        (b["number"], b["rows"]) async for b in rt.store.batches.find({"transaction_id": tx_id})
    ]
    errors = [
        (e["error"]["row"], e["error"]["code"])
        async for e in rt.store.row_errors.find({"transaction_id": tx_id})
    ]
    return {
        "status": tx.status,
        "counters": tx.counters,
        "batches": tx.batches,
        "messages": sorted(messages),
        "message_count": len(messages),
        "batch_docs": sorted(batches),
        "errors": sorted(errors),
    }


async def test_a_killed_ingest_resumes_to_the_same_result(
    runtime: Runtime,
    s3: S3Client,
    stack_info: StackInfo,
    db_name: str,
    ingest_process: tuple[ProcessGroup, dict[str, str]],
) -> None:
    rt = runtime
    for stream in ("TX_ACCEPTED", "TX_INGESTED", "TX_STATUS"):
        await rt.broker.js.purge_stream(stream)
    body = recipients(ROWS)

    # The reference: the same file ingested without interruption, in this process.
    reference = await accepted(rt, s3, stack_info.s3_bucket, body)
    settings = load_settings(IngestSettings, settings_for(stack_info, db_name))
    await IngestActor(rt.store, rt.broker, s3, settings).handle(
        TxAccepted(transaction_id=reference.id)
    )
    expected = await outcome(rt, reference.id)
    assert expected["status"] == TxStatus.PROCESSING
    assert expected["counters"]["total"] > 10_000

    # The same file through the ingest service, killed half-way.
    group, env = ingest_process
    argv = [sys.executable, "-m", "services.ingest"]
    tx = await accepted(rt, s3, stack_info.s3_bucket, body)
    group.start("ingest", argv, env=env)
    await rt.broker.publish(
        Subjects.TX_ACCEPTED, TxAccepted(transaction_id=tx.id), msg_id=f"{tx.id}:accepted"
    )
    for _ in range(600):
        progress = (await load_transaction(rt.store, tx.id)).ingest_progress
        if progress.get("valid", 0) >= 2_000:
            break
        await asyncio.sleep(0.05)
    os.kill(group.pid("ingest"), signal.SIGKILL)
    killed = await load_transaction(rt.store, tx.id)
    assert "total" not in killed.counters, "the kill came too late to interrupt the file"
    assert (
        0
        < await rt.store.messages.count_documents({"transaction_id": tx.id})
        < expected["message_count"]
    )

    group.start("ingest", argv, env=env)  # a new process; JetStream redelivers the job
    for _ in range(1200):
        if "total" in (await load_transaction(rt.store, tx.id)).counters:
            break
        await asyncio.sleep(0.1)

    assert await outcome(rt, tx.id) == expected
    history = [e.status for e in (await load_transaction(rt.store, tx.id)).status_history]
    assert history == [TxStatus.ACCEPT, TxStatus.PROCESSING]
