"""The sender against the real store, NATS and the SES simulator: claim, send, record."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiolimiter import AsyncLimiter
from botocore.exceptions import ClientError

from services.sender.sending import SenderActor
from services.sender.ses import Ses, SesPaused, SesRejected, SesThrottled, classify
from shared.aws import open_sesv2
from shared.documents import (
    Batch,
    Message,
    S3Location,
    StatusEntry,
    Template,
    Transaction,
    message_id,
    to_document,
)
from shared.errors import RetryableError, UpstreamUnavailable
from shared.events import SendBatch
from shared.records import load_transaction
from shared.service import Runtime
from shared.settings import SenderSettings, load_settings
from shared.status import MessageStatus, TxStatus
from stack.launcher import StackInfo
from tests.conftest import settings_for


@pytest.fixture
async def sender(
    runtime: Runtime, stack_info: StackInfo, db_name: str
) -> AsyncIterator[SenderActor]:
    await runtime.broker.js.purge_stream("TX_STATUS")
    settings = load_settings(SenderSettings, settings_for(stack_info, db_name))
    async with AsyncExitStack() as exits:
        client = await open_sesv2(exits, settings, settings.ses_endpoint_url)
        ses = Ses(client, "sender@example.org", "test-set")
        yield SenderActor(runtime.store, runtime.broker, ses, AsyncLimiter(1000, 1), settings)


@pytest.fixture
async def sim(stack_info: StackInfo) -> AsyncIterator[httpx.AsyncClient]:
    assert stack_info.sim_url is not None
    async with httpx.AsyncClient(base_url=stack_info.sim_url, timeout=10) as client:
        yield client
        await client.delete("/_sim/faults")


async def ready_transaction(
    rt: Runtime,
    rows: dict[int, str],
    *,
    html: str = "<p>Hi {{ name }}</p>",
    mode: str = "live",
) -> Transaction:
    """A transaction as the scheduler leaves it: READY_TO_SEND, one batch of messages."""
    now = datetime.now(UTC)
    tx_id = uuid.uuid4().hex
    template = Template(
        id=uuid.uuid4().hex,
        tenant="t",
        name="n",
        subject="Hello {{ name }}",
        html=html,
        placeholders=["name"],
        created_at=now,
    )
    await rt.store.templates.insert_one(to_document(template))
    tx = Transaction(
        id=tx_id,
        tenant="t",
        status=TxStatus.READY_TO_SEND,
        template_id=template.id,
        source=S3Location(bucket="b", key="k"),
        batches=1,
        counters={"total": len(rows), "invalid": 0, "dispatched": 0, "ready_to_send": len(rows)},
        status_history=[StatusEntry(status=TxStatus.READY_TO_SEND, at=now)],
        mode=mode,
        created_at=now,
        updated_at=now,
    )
    await rt.store.transactions.insert_one(to_document(tx))
    messages = [
        Message(
            id=message_id(tx_id, row),
            transaction_id=tx_id,
            tenant="t",
            batch=0,
            row=row,
            email=email,
            data={"name": f"N{row}"},
            status=MessageStatus.READY_TO_SEND,
        )
        for row, email in rows.items()
    ]
    await rt.store.messages.insert_many([to_document(m) for m in messages])
    batch = Batch(id=f"{tx_id}:0", transaction_id=tx_id, number=0, rows=list(rows))
    await rt.store.batches.insert_one(to_document(batch))
    return tx


async def statuses(rt: Runtime, tx_id: str) -> dict[int, dict[str, Any]]:
    return {m["row"]: m async for m in rt.store.messages.find({"transaction_id": tx_id})}


async def sends_of(sim: httpx.AsyncClient, tx: Transaction, rows: list[int]) -> list[int]:
    """How many sends of each row the simulator accepted."""
    return [len(await sends(sim, f"{tx.id}-{row}")) for row in rows]


async def sends(sim: httpx.AsyncClient, tagged_id: str) -> list[dict[str, Any]]:
    response = await sim.get("/_sim/sends", params={"message_id": tagged_id})
    found: list[dict[str, Any]] = response.json()
    return found


ROWS = {2: "success@simulator.amazonses.com", 3: "bounce@simulator.amazonses.com"}


async def test_a_batch_is_sent_once_and_recorded(
    runtime: Runtime, sender: SenderActor, sim: httpx.AsyncClient
) -> None:
    tx = await ready_transaction(runtime, ROWS)

    await sender.handle(SendBatch(transaction_id=tx.id, batch=0))

    messages = await statuses(runtime, tx.id)
    assert {row: m["status"] for row, m in messages.items()} == {2: "SENT", 3: "SENT"}
    assert all(m["ses_message_id"] and m["attempts"] == 1 for m in messages.values())
    after = await load_transaction(runtime.store, tx.id)
    assert after.status == TxStatus.SENT
    assert after.counters == {
        "total": 2,
        "invalid": 0,
        "dispatched": 2,
        "ready_to_send": 0,
        "sending": 0,
        "sent": 2,
    }
    assert await sends_of(sim, tx, [2, 3]) == [1, 1]
    sent = (await sends(sim, f"{tx.id}-2"))[0]
    assert sent["subject"] == "Hello N2"
    assert sent["tags"] == {"message_id": f"{tx.id}-2", "transaction_id": tx.id, "row": "2"}

    # The same batch again (a redelivery): nothing is waiting, nothing is sent twice.
    await sender.handle(SendBatch(transaction_id=tx.id, batch=0))
    assert await sends_of(sim, tx, [2, 3]) == [1, 1]


async def test_throttling_puts_messages_back_and_a_retry_sends_them(
    runtime: Runtime, sender: SenderActor, sim: httpx.AsyncClient
) -> None:
    tx = await ready_transaction(runtime, ROWS)
    await sim.post("/_sim/faults", json={"kind": "throttle", "seconds": 30})

    with pytest.raises(RetryableError):
        await sender.handle(SendBatch(transaction_id=tx.id, batch=0))

    messages = await statuses(runtime, tx.id)
    assert {m["status"] for m in messages.values()} == {"READY_TO_SEND"}
    assert {m["last_error"]["code"] for m in messages.values()} == {"SesThrottled"}
    during = await load_transaction(runtime.store, tx.id)
    assert during.status == TxStatus.READY_TO_SEND
    assert during.counters["ready_to_send"] == 2
    assert during.counters["sending"] == 0

    await sim.delete("/_sim/faults")
    await sender.handle(SendBatch(transaction_id=tx.id, batch=0))
    assert {m["status"] for m in (await statuses(runtime, tx.id)).values()} == {"SENT"}
    assert await sends_of(sim, tx, [2, 3]) == [1, 1]
    assert (await load_transaction(runtime.store, tx.id)).status == TxStatus.SENT


async def test_a_message_that_cannot_render_fails_alone(
    runtime: Runtime, sender: SenderActor, sim: httpx.AsyncClient
) -> None:
    tx = await ready_transaction(runtime, ROWS, html="<p>{{ name }} {{ name.no.such }}</p>")
    await sender.handle(SendBatch(transaction_id=tx.id, batch=0))
    messages = await statuses(runtime, tx.id)
    assert {m["status"] for m in messages.values()} == {"FAILED"}
    assert {m["last_error"]["code"] for m in messages.values()} == {"TEMPLATE_RENDER_ERROR"}
    after = await load_transaction(runtime.store, tx.id)
    assert after.status == TxStatus.SENT  # every message is dispatched, some failed
    assert (after.counters["failed"], after.counters["dispatched"]) == (2, 2)
    assert await sends_of(sim, tx, [2, 3]) == [0, 0]


async def test_a_cancelled_transaction_sends_nothing(
    runtime: Runtime, sender: SenderActor, sim: httpx.AsyncClient
) -> None:
    tx = await ready_transaction(runtime, ROWS)
    await runtime.store.transactions.update_one(
        {"_id": tx.id}, {"$set": {"status": TxStatus.CANCELLED}}
    )
    await sender.handle(SendBatch(transaction_id=tx.id, batch=0))
    assert await sends_of(sim, tx, [2, 3]) == [0, 0]


def _client_error(code: str, status: int, message: str = "m") -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "SendEmail",
    )


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("TooManyRequestsException", 429, SesThrottled),
        ("Throttling", 400, SesThrottled),
        ("SendingPausedException", 400, SesPaused),
        ("AccountSuspendedException", 400, SesPaused),
        ("LimitExceededException", 400, SesPaused),
        ("InternalFailure", 500, UpstreamUnavailable),
        ("ServiceUnavailable", 503, UpstreamUnavailable),
        ("MessageRejected", 400, SesRejected),
        ("MailFromDomainNotVerifiedException", 400, SesRejected),
        ("BadRequestException", 400, SesRejected),
    ],
)
def test_ses_errors_are_sorted_by_what_to_do(code: str, status: int, kind: type[Exception]) -> None:
    error = classify(_client_error(code, status))
    assert type(error) is kind


async def test_a_test_mode_transaction_reaches_only_the_mailbox_simulator(
    runtime: Runtime, sender: SenderActor, sim: httpx.AsyncClient
) -> None:
    rows = {2: "ada@example.org", 3: "bounce+x@simulator.amazonses.com"}
    tx = await ready_transaction(runtime, rows, mode="test")

    await sender.handle(SendBatch(transaction_id=tx.id, batch=0))

    sent = {row: (await sends(sim, f"{tx.id}-{row}"))[0]["destination"] for row in rows}
    assert sent == {
        2: ["success@simulator.amazonses.com"],
        3: ["bounce+x@simulator.amazonses.com"],
    }


async def test_a_live_transaction_goes_to_the_real_address(
    runtime: Runtime, sender: SenderActor, sim: httpx.AsyncClient
) -> None:
    tx = await ready_transaction(runtime, {2: "ada@example.org"})
    await sender.handle(SendBatch(transaction_id=tx.id, batch=0))
    assert (await sends(sim, f"{tx.id}-2"))[0]["destination"] == ["ada@example.org"]
