"""Live progress as Server-Sent Events (``GET /api/v1/transactions/{id}/events``).

Served by uvicorn on a real socket (Litestar's test client collects a whole response before
it answers, so it could not show events arriving), read with httpx as the dashboard's
``fetch`` would, while the test drives a real transaction through its statuses with
``transition_tx`` (which announces each change on NATS, as the services do).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import pytest

from services.gateway.deps import GatewayDeps
from shared.documents import S3Location, StatusEntry, Transaction, to_document
from shared.records import load_transaction
from shared.status import TxStatus
from shared.transitions import transition_tx
from tests.conftest import issue_key
from tests.gateway.conftest import TENANT, ServerFactory, bearer

OTHER_TENANT = "globex"

Event = tuple[str, dict[str, Any]]


@pytest.fixture
async def served(make_server: ServerFactory) -> AsyncIterator[str]:
    """The gateway on a free port, on this test's clients; its base URL."""
    async with make_server() as base_url:
        yield base_url


async def _read(response: httpx.Response, events: list[Event]) -> None:
    """Parse the stream into ``events`` until the server closes it."""
    name, data = "message", ""
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data += line.removeprefix("data: ")
        elif line == "" and data:
            events.append((name, msgspec.json.decode(data)))
            name, data = "message", ""


async def _until(check: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.02)


async def test_the_stream_follows_a_transaction_to_its_end(
    served: str, deps: GatewayDeps, api_key: str
) -> None:
    now = datetime.now(UTC)
    tx = Transaction(
        id="tx-live",
        tenant=TENANT,
        status=TxStatus.ACCEPT,
        template_id="tpl-1",
        source=S3Location(bucket="b", key="k.csv"),
        status_history=[StatusEntry(status=TxStatus.ACCEPT, at=now)],
        created_at=now,
        updated_at=now,
    )
    await deps.store.transactions.insert_one(to_document(tx))
    events: list[Event] = []

    def seen(name: str, check: Callable[[dict[str, Any]], bool] = lambda _: True) -> bool:
        return any(n == name and check(d) for n, d in events)

    async def move(to: TxStatus, **fields: Any) -> None:
        current = await load_transaction(deps.store, tx.id)
        assert await transition_tx(deps.store, deps.broker, current, to, also_set=fields)
        await _until(lambda: seen("status", lambda d: d["status"] == to))

    async with (
        httpx.AsyncClient(base_url=served, headers=bearer(api_key), timeout=30) as http,
        http.stream("GET", f"/api/v1/transactions/{tx.id}/events") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        reader = asyncio.create_task(_read(response, events))
        await _until(lambda: seen("progress"))
        assert events[0] == (
            "status",
            {
                "transaction_id": tx.id,
                "status": "ACCEPT",
                "old_status": None,
                "timestamp": events[0][1]["timestamp"],
                "metadata": {},
            },
        )
        assert events[1][1]["progress"]["total_messages"] == 0

        await move(TxStatus.PROCESSING)
        # Ingest's progress, batch by batch, without a status change.
        await deps.store.transactions.update_one(
            {"_id": tx.id}, {"$set": {"ingest_progress": {"valid": 40, "invalid": 2}}}
        )
        await _until(lambda: seen("progress", lambda d: d["progress"]["total_messages"] == 42))
        await move(TxStatus.READY_TO_SEND, counters={"total": 40, "invalid": 2, "sent": 40})
        await move(TxStatus.SENT)
        await deps.store.transactions.update_one(
            {"_id": tx.id}, {"$set": {"counters.delivered": 10, "counters.sent": 30}}
        )
        await _until(lambda: seen("progress", lambda d: d["progress"]["processed_messages"] == 10))
        await deps.store.transactions.update_one(
            {"_id": tx.id}, {"$set": {"counters.delivered": 40, "counters.sent": 0}}
        )
        await move(TxStatus.COMPLETED)
        # The server closes the stream after ``end``: the reader returns.
        await asyncio.wait_for(reader, 10)

    statuses = [(d["old_status"], d["status"]) for n, d in events if n == "status"]
    assert statuses == [
        (None, "ACCEPT"),
        ("ACCEPT", "PROCESSING"),
        ("PROCESSING", "READY_TO_SEND"),
        ("READY_TO_SEND", "SENT"),
        ("SENT", "COMPLETED"),
    ]
    assert events[-1] == ("end", {"transaction_id": tx.id, "status": "COMPLETED"})
    last_progress = [d for n, d in events if n == "progress"][-1]
    assert last_progress["status"] == "COMPLETED"
    assert last_progress["progress"]["percentage"] == 100.0
    # Only changes are sent: no two progress events in a row say the same.
    progress = [(d["status"], d["progress"]) for n, d in events if n == "progress"]
    assert all(a != b for a, b in itertools.pairwise(progress))


async def test_a_final_transaction_ends_at_once_and_another_tenants_is_not_found(
    served: str, deps: GatewayDeps, api_key: str
) -> None:
    now = datetime.now(UTC)
    tx = Transaction(
        id="tx-done",
        tenant=TENANT,
        status=TxStatus.FAILED,
        template_id="tpl-1",
        source=S3Location(bucket="b", key="k.csv"),
        status_history=[
            StatusEntry(status=TxStatus.ACCEPT, at=now),
            StatusEntry(status=TxStatus.FAILED, at=now),
        ],
        created_at=now,
        updated_at=now,
    )
    await deps.store.transactions.insert_one(to_document(tx))
    async with httpx.AsyncClient(base_url=served, headers=bearer(api_key), timeout=10) as http:
        answer = await http.get(f"/api/v1/transactions/{tx.id}/events")
        assert answer.status_code == 200
        names = [
            line.removeprefix("event: ")
            for line in answer.text.splitlines()
            if line.startswith("event: ")
        ]
        assert names == ["status", "progress", "end"]
    other = await issue_key(deps.store, OTHER_TENANT)
    async with httpx.AsyncClient(base_url=served, headers=bearer(other), timeout=10) as http:
        hidden = await http.get(f"/api/v1/transactions/{tx.id}/events")
        assert hidden.status_code == 404
        assert hidden.json()["error"]["code"] == "TRANSACTION_NOT_FOUND"
    async with httpx.AsyncClient(base_url=served, timeout=10) as http:
        assert (await http.get(f"/api/v1/transactions/{tx.id}/events")).status_code == 401
