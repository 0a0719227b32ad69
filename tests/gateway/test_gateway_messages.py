"""``GET /transactions/{id}/messages``: each recipient's status and SES events, by row; and
the final ``stats`` of ``GET /transactions/{id}`` once the tracker completes a transaction."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from services.gateway.cursor import RowPosition, encode_cursor
from services.gateway.deps import GatewayDeps
from services.tracker.completion import complete_if_done
from shared.documents import (
    Message,
    S3Location,
    StatusEntry,
    Transaction,
    message_id,
    to_document,
)
from shared.status import MessageStatus, TxStatus
from tests.gateway.conftest import TENANT

Client = AsyncTestClient[Litestar]

AT = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
BOUNCE = {
    "key": "b1",
    "kind": "Bounce",
    "ses_message_id": "ses-1",
    "timestamp": AT,
    "bounce_type": "Permanent",
    "details": {"bounceSubType": "General"},
}
# Rows far apart: the listing must find the rows past a gap larger than any window.
ROWS = [2, 3, 5, 6, 7, 9, 40_000, 40_001]


def _status(row: int) -> MessageStatus:
    return {5: MessageStatus.BOUNCED, 9: MessageStatus.FAILED, 40_000: MessageStatus.BOUNCED}.get(
        row, MessageStatus.DELIVERED
    )


async def _transaction(
    deps: GatewayDeps,
    tenant: str = TENANT,
    status: TxStatus = TxStatus.COMPLETED,
    counters: dict[str, int] | None = None,
    history: list[StatusEntry] | None = None,
) -> str:
    tx_id = uuid.uuid4().hex
    tx = Transaction(
        id=tx_id,
        tenant=tenant,
        status=status,
        template_id="t",
        source=S3Location(bucket="b", key="k"),
        counters=counters or {},
        status_history=history or [StatusEntry(status=TxStatus.ACCEPT, at=AT)],
        created_at=(history or [StatusEntry(status=TxStatus.ACCEPT, at=AT)])[0].at,
        updated_at=AT,
    )
    await deps.store.transactions.insert_one(to_document(tx))
    return tx_id


def _message(tx_id: str, row: int, tenant: str = TENANT) -> dict[str, Any]:
    status = _status(row)
    message = Message(
        id=message_id(tx_id, row),
        transaction_id=tx_id,
        tenant=tenant,
        batch=0,
        row=row,
        email=f"r{row}@example.com",
        data={"first_name": f"R{row}"},
        status=status,
        attempts=1,
        last_error=(
            {"code": "MessageRejected", "message": "Email address is not verified", "at": AT}
            if status == MessageStatus.FAILED
            else None
        ),
        events=[BOUNCE] if status == MessageStatus.BOUNCED else [],
        updated_at=AT,
    )
    return to_document(message)


async def _with_messages(deps: GatewayDeps, tenant: str = TENANT) -> str:
    tx_id = await _transaction(deps, tenant)
    await deps.store.messages.insert_many([_message(tx_id, row, tenant) for row in ROWS])
    return tx_id


async def _all_pages(client: Client, path: str, **params: Any) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    cursor = None
    while True:
        query = {**params, **({} if cursor is None else {"cursor": cursor})}
        response = await client.get(path, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


async def test_messages_are_listed_by_row_a_page_at_a_time(
    client: Client, deps: GatewayDeps
) -> None:
    tx_id = await _with_messages(deps)
    path = f"/api/v1/transactions/{tx_id}/messages"

    pages = await _all_pages(client, path, limit=3)

    assert [[m["row"] for m in page] for page in pages] == [[2, 3, 5], [6, 7, 9], [40_000, 40_001]]
    by_row = {m["row"]: m for page in pages for m in page}
    assert by_row[5] == {
        "row": 5,
        "email": "r5@example.com",
        "status": "BOUNCED",
        "data": {"first_name": "R5"},
        "send_at": None,
        "attempts": 1,
        "last_error": None,
        "events": [
            {
                "kind": "Bounce",
                "timestamp": "2030-01-01T09:00:00Z",
                "ses_message_id": "ses-1",
                "bounce_type": "Permanent",
                "details": {"bounceSubType": "General"},
            }
        ],
        "updated_at": "2030-01-01T09:00:00Z",
    }
    assert by_row[9]["last_error"] == {
        "code": "MessageRejected",
        "message": "Email address is not verified",
        "at": "2030-01-01T09:00:00Z",
    }


async def test_messages_filtered_by_status(client: Client, deps: GatewayDeps) -> None:
    tx_id = await _with_messages(deps)
    path = f"/api/v1/transactions/{tx_id}/messages"

    bounced = await _all_pages(client, path, status="BOUNCED", limit=1)
    assert [[m["row"] for m in page] for page in bounced] == [[5], [40_000]]
    failed = (await client.get(path, params={"status": "FAILED"})).json()
    assert [m["email"] for m in failed["items"]] == ["r9@example.com"]
    none = (await client.get(path, params={"status": "EXPIRED"})).json()
    assert none == {"items": [], "next_cursor": None}

    bad = await client.get(path, params={"status": "NOPE"})
    assert bad.status_code == 400, bad.text
    assert bad.json()["error"]["code"] == "VALIDATION_ERROR"


async def test_messages_of_another_tenant_or_cursor_of_another_transaction(
    client: Client, deps: GatewayDeps
) -> None:
    foreign = await _with_messages(deps, tenant="globex")
    missing = await client.get(f"/api/v1/transactions/{foreign}/messages")
    assert missing.status_code == 404, missing.text
    assert missing.json()["error"]["code"] == "TRANSACTION_NOT_FOUND"

    own = await _with_messages(deps)
    stray = encode_cursor(RowPosition(row=3, id=message_id(foreign, 3)))
    answer = await client.get(f"/api/v1/transactions/{own}/messages", params={"cursor": stray})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "INVALID_CURSOR"


async def test_a_completed_transaction_shows_its_final_stats(
    client: Client, deps: GatewayDeps
) -> None:
    counters = {"total": 4, "invalid": 1, "delivered": 2, "bounced": 1, "failed": 1}
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    history = [
        StatusEntry(status=status, at=start + timedelta(minutes=minutes))
        for status, minutes in [
            (TxStatus.ACCEPT, 0),
            (TxStatus.PROCESSING, 1),
            (TxStatus.READY_TO_SEND, 2),
            (TxStatus.SENT, 5),
        ]
    ]
    tx_id = await _transaction(deps, status=TxStatus.SENT, counters=counters, history=history)
    assert (await client.get(f"/api/v1/transactions/{tx_id}")).json()["stats"] is None

    assert await complete_if_done(deps.store, deps.broker, tx_id)

    # Polls are answered from a read up to STATUS_MAX_AGE_SECONDS (1 s) old.
    deadline = time.monotonic() + 1 + 2
    while (view := (await client.get(f"/api/v1/transactions/{tx_id}")).json())["status"] == "SENT":
        assert time.monotonic() < deadline, "the completion never showed"
        await asyncio.sleep(0.1)
    assert view["status"] == "COMPLETED"
    stats = view["stats"]
    assert stats["total"] == 4
    assert stats["invalid"] == 1
    assert {k: v for k, v in stats["counts"].items() if v} == {
        "delivered": 2,
        "bounced": 1,
        "failed": 1,
    }
    assert stats["rates"]["delivered"] == 0.5
    assert stats["rates"]["failed"] == 0.25
    seconds = stats["seconds_in_status"]
    assert (seconds["ACCEPT"], seconds["PROCESSING"], seconds["READY_TO_SEND"]) == (60, 60, 180)
    assert 300 <= seconds["SENT"] < 360
    assert 600 <= stats["seconds_total"] < 660
