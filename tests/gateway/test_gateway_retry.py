"""``POST /transactions/{id}/retry-failed`` on the real stack: the file of the failed
recipients in S3, the new transaction announced as a submission's, read by the real ingest
into exactly those recipients; asked twice, one transaction.

The outcomes are set in the store: the SES simulator has no address that SES refuses for
good (FAILED) and no way to lose an outcome (EXPIRED).
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from litestar import Litestar
from litestar.testing import AsyncTestClient

from services.gateway.deps import GatewayDeps
from services.gateway.retry import retry_id
from shared.documents import message_id
from shared.events import TxAccepted
from shared.records import load_transaction
from shared.settings import GatewaySettings
from shared.status import MessageStatus as M
from shared.status import TxStatus
from shared.topology import Subjects
from stack.launcher import StackInfo
from tests.gateway.campaign import ingest, run_ingest
from tests.gateway.conftest import TENANT

Client = AsyncTestClient[Litestar]

IN_AN_HOUR = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0).isoformat()
# Row 2 is the header's next line; each row's outcome, set in the store.
OUTCOMES = {
    2: M.DELIVERED,
    3: M.FAILED,
    4: M.BOUNCED,
    5: M.EXPIRED,
    6: M.COMPLAINED,
    7: M.SUPPRESSED,
    8: M.FAILED,
    9: M.CANCELLED,
}
HEADER = ["Email", "First Name", "send_at", "Note"]


def _file() -> bytes:
    lines = io.StringIO()
    writer = csv.writer(lines, lineterminator="\r\n")
    writer.writerow(HEADER)
    for row in OUTCOMES:
        writer.writerow([f"User{row}@Example.com", f"N{row}", IN_AN_HOUR, f'says "{row}", ok'])
    return lines.getvalue().encode()


async def _finish(deps: GatewayDeps, tx_id: str, outcomes: dict[int, M]) -> None:
    """Every message to its outcome and the transaction COMPLETED, counters included."""
    for row, status in outcomes.items():
        await deps.store.messages.update_one(
            {"_id": message_id(tx_id, row)}, {"$set": {"status": status}}
        )
    counts: dict[str, int] = {}
    for status in outcomes.values():
        counts[status.lower()] = counts.get(status.lower(), 0) + 1
    await deps.store.transactions.update_one(
        {"_id": tx_id},
        {
            "$set": {
                "status": TxStatus.COMPLETED,
                "counters": {"total": len(outcomes), "invalid": 0, **counts},
            }
        },
    )


def _error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


async def test_retry_failed_resends_exactly_the_failed_and_expired_recipients(
    client: Client, deps: GatewayDeps, gateway_settings: GatewaySettings, stack_info: StackInfo
) -> None:
    tx_id = await ingest(
        deps,
        gateway_settings,
        stack_info,
        _file(),
        callback_url="https://hooks.example.com/x",
        metadata={"campaign": "spring"},
    )
    path = f"/api/v1/transactions/{tx_id}/retry-failed"
    # Not finished yet.
    _error(await client.post(path), 409, "TX_NOT_RETRYABLE")
    await _finish(deps, tx_id, OUTCOMES)

    answer = await client.post(path)

    assert answer.status_code == 202, answer.text
    retry = answer.json()
    new_id = retry["transaction_id"]
    assert new_id == retry_id(tx_id) != tx_id
    assert retry["status"] == "ACCEPT"
    assert retry["callback_url"] == "https://hooks.example.com/x"
    assert retry["metadata"] == {"campaign": "spring", "retry_of": tx_id}
    original = await load_transaction(deps.store, tx_id)
    made = await load_transaction(deps.store, new_id)
    assert (made.tenant, made.template_id, made.send_at) == (TENANT, original.template_id, None)
    assert original.retried_as == new_id
    assert (await client.get(f"/api/v1/transactions/{tx_id}")).json()["retried_as"] == new_id

    # The file: the original header, the FAILED rows then the EXPIRED one, send_at emptied.
    stored = await deps.s3.get_object(Bucket=made.source.bucket, Key=made.source.key)
    async with stored["Body"] as stream:
        text = (await stream.read()).decode()
    assert made.source.key == f"uploads/{TENANT}/{new_id}.csv"
    assert list(csv.reader(io.StringIO(text, newline=""))) == [
        HEADER,
        ["User3@example.com", "N3", "", 'says "3", ok'],
        ["User8@example.com", "N8", "", 'says "8", ok'],
        ["User5@example.com", "N5", "", 'says "5", ok'],
    ]

    # Announced as a submission is.
    accepted = await deps.broker.js.get_last_msg("TX_ACCEPTED", Subjects.TX_ACCEPTED)
    assert msgspec.json.decode(accepted.data or b"", type=TxAccepted).transaction_id == new_id

    # Asked again: the same transaction, nothing new.
    again = await client.post(path)
    assert again.status_code == 202, again.text
    assert again.json()["transaction_id"] == new_id
    assert await deps.store.transactions.count_documents({"metadata.retry_of": tx_id}) == 1

    # Ingest reads it into exactly the failed recipients, sent now.
    await run_ingest(deps, gateway_settings, stack_info, new_id)
    messages = await deps.store.messages.find({"transaction_id": new_id}).to_list()
    assert sorted((m["email"], m["data"]["first_name"]) for m in messages) == [
        ("User3@example.com", "N3"),
        ("User5@example.com", "N5"),
        ("User8@example.com", "N8"),
    ]
    assert all(m.get("send_at") is None for m in messages)
    assert (await load_transaction(deps.store, new_id)).counters["total"] == 3

    # Once it is processing, a repeat still answers it, as it is now.
    later = await client.post(path)
    assert later.status_code == 202, later.text
    assert later.json()["transaction_id"] == new_id
    assert later.json()["status"] != "ACCEPT"


async def test_nothing_to_retry_and_other_tenants(
    client: Client, deps: GatewayDeps, gateway_settings: GatewaySettings, stack_info: StackInfo
) -> None:
    body = b"email,first_name\na@example.com,A\nb@example.com,B\n"
    tx_id = await ingest(deps, gateway_settings, stack_info, body)
    await _finish(deps, tx_id, {2: M.DELIVERED, 3: M.BOUNCED})
    _error(await client.post(f"/api/v1/transactions/{tx_id}/retry-failed"), 409, "NOTHING_TO_RETRY")
    assert (await load_transaction(deps.store, tx_id)).retried_as is None
    assert await deps.store.transactions.find_one({"_id": retry_id(tx_id)}) is None

    # Another tenant's transaction answers as a missing one.
    await deps.store.transactions.update_one({"_id": tx_id}, {"$set": {"tenant": "globex"}})
    _error(
        await client.post(f"/api/v1/transactions/{tx_id}/retry-failed"),
        404,
        "TRANSACTION_NOT_FOUND",
    )
    for status in (TxStatus.FAILED, TxStatus.CANCELLED):
        await deps.store.transactions.update_one(
            {"_id": tx_id}, {"$set": {"tenant": TENANT, "status": status}}
        )
        _error(
            await client.post(f"/api/v1/transactions/{tx_id}/retry-failed"),
            409,
            "TX_NOT_RETRYABLE",
        )
