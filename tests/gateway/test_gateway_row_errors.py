"""Row errors through the API: filtered by code, and as a CSV file to fix and resubmit.

The errors come from the real ingest of a file in S3 (moto), so the CSV export is checked
against what a client uploaded: its header, its values, its quoting.
"""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from services.gateway.deps import GatewayDeps
from services.gateway.exports import row_errors_csv
from services.ingest.ingestion import IngestActor
from shared.documents import (
    RowError,
    S3Location,
    StatusEntry,
    StoredRowError,
    Template,
    Transaction,
    to_document,
)
from shared.events import TxAccepted
from shared.records import load_transaction
from shared.settings import GatewaySettings, IngestSettings, load_settings
from shared.status import TxStatus
from stack.launcher import StackInfo
from tests.conftest import issue_key, settings_for
from tests.gateway.conftest import TENANT, ClientFactory, bearer

Client = AsyncTestClient[Litestar]

# A semicolon file with a BOM: values with commas, quotes and line breaks; six rows in error.
UPLOAD = (
    "\ufeffEmail;First Name;Note\r\n"
    "ada@example.com;Ada;plain\r\n"
    'not-an-address;"Smith, Bob";"says ""hi"""\r\n'
    ';Cy;"two\r\nlines"\r\n'
    "\r\n"
    "dee@example.com;;x\r\n"
    "eve@example.com;Eve;short row;extra\r\n"
    'also bad;"Zoë";"a;b"\r\n'
    "ada@example.com;Ada again;dup\r\n"
).encode()

EXPECTED_CSV = (
    "Email,First Name,Note,error_code,error_message\r\n"
    'not-an-address,"Smith, Bob","says ""hi""",INVALID_EMAIL,{3}\r\n'
    ',Cy,"two\r\nlines",MISSING_EMAIL,Row 4 has no email address\r\n'
    "dee@example.com,,x,MISSING_PLACEHOLDER_VALUE,"
    "\"Row 6 has no value in column 'first_name', which the template uses\"\r\n"
    "eve@example.com,Eve,short row,extra,FIELD_COUNT_MISMATCH,"
    "Row 7 has 4 fields where the header has 3\r\n"
    "also bad,Zoë,a;b,INVALID_EMAIL,{8}\r\n"
    "ada@example.com,Ada again,dup,DUPLICATE_RECIPIENT,"
    "Row 9: ada@example.com is the address of an earlier row too; only the first row with "
    "an address becomes a message\r\n"
)


async def _ingested(
    deps: GatewayDeps, settings: GatewaySettings, stack_info: StackInfo, body: bytes
) -> str:
    """A transaction of ``TENANT`` whose file ``body`` the real ingest has read."""
    now = datetime.now(UTC)
    tx_id = uuid.uuid4().hex
    key = f"uploads/{TENANT}/{tx_id}.csv"
    await deps.s3.put_object(Bucket=settings.s3_bucket, Key=key, Body=body)
    template = Template(
        id=uuid.uuid4().hex,
        tenant=TENANT,
        name="n",
        subject="Hi {{ first_name }}",
        text="Hello",
        placeholders=["first_name"],
        created_at=now,
    )
    await deps.store.templates.insert_one(to_document(template))
    tx = Transaction(
        id=tx_id,
        tenant=TENANT,
        status=TxStatus.ACCEPT,
        template_id=template.id,
        source=S3Location(bucket=settings.s3_bucket, key=key),
        status_history=[StatusEntry(status=TxStatus.ACCEPT, at=now)],
        created_at=now,
        updated_at=now,
    )
    await deps.store.transactions.insert_one(to_document(tx))
    ingest_settings = load_settings(
        IngestSettings, settings_for(stack_info, settings.mongodb_db, BATCH_SIZE="2")
    )
    await IngestActor(deps.store, deps.broker, deps.s3, ingest_settings).handle(
        TxAccepted(transaction_id=tx_id)
    )
    return tx_id


async def _messages(client: Client, tx_id: str) -> dict[int, str]:
    """Each row error's message by row, as the JSON endpoint gives them."""
    response = await client.get(f"/api/v1/transactions/{tx_id}/errors", params={"limit": 200})
    assert response.status_code == 200, response.text
    return {item["details"]["row"]: item["message"] for item in response.json()["items"]}


async def test_the_csv_export_is_the_original_rows_plus_their_errors(
    client: Client, deps: GatewayDeps, gateway_settings: GatewaySettings, stack_info: StackInfo
) -> None:
    tx_id = await _ingested(deps, gateway_settings, stack_info, UPLOAD)
    tx = await load_transaction(deps.store, tx_id)
    assert tx.columns == ["Email", "First Name", "Note"]
    messages = await _messages(client, tx_id)

    response = await client.get(f"/api/v1/transactions/{tx_id}/errors.csv")

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == (f'attachment; filename="{tx_id}-errors.csv"')
    assert response.content.decode() == _expected(messages)
    # What it says reads back, with Python's csv module, into the original values.
    rows = list(csv.reader(io.StringIO(response.content.decode(), newline="")))
    assert rows[2][:3] == ["", "Cy", "two\r\nlines"]
    assert rows[1][:3] == ["not-an-address", "Smith, Bob", 'says "hi"']


def _expected(messages: dict[int, str]) -> str:
    """EXPECTED_CSV with email-validator's messages of rows 3 and 8 filled in."""
    return EXPECTED_CSV.replace("{3}", _quoted(messages[3])).replace("{8}", _quoted(messages[8]))


def _quoted(value: str) -> str:
    line = io.StringIO()
    csv.writer(line, lineterminator="").writerow([value])
    return line.getvalue()


async def test_the_csv_export_and_the_list_filter_by_code(
    client: Client, deps: GatewayDeps, gateway_settings: GatewaySettings, stack_info: StackInfo
) -> None:
    tx_id = await _ingested(deps, gateway_settings, stack_info, UPLOAD)
    path = f"/api/v1/transactions/{tx_id}/errors"

    listed = await client.get(path, params={"code": "INVALID_EMAIL", "limit": 1})
    assert [i["details"]["row"] for i in listed.json()["items"]] == [3]
    rest = await client.get(
        path, params={"code": "INVALID_EMAIL", "limit": 1, "cursor": listed.json()["next_cursor"]}
    )
    assert [i["details"]["row"] for i in rest.json()["items"]] == [8]
    assert rest.json()["next_cursor"] is None
    assert (await client.get(path, params={"code": "NO_SUCH_CODE"})).json() == {
        "items": [],
        "next_cursor": None,
    }
    bad = await client.get(path, params={"code": "invalid email"})
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "VALIDATION_ERROR"

    exported = await client.get(f"{path}.csv", params={"code": "MISSING_EMAIL"})
    assert exported.content.decode() == (
        "Email,First Name,Note,error_code,error_message\r\n"
        ',Cy,"two\r\nlines",MISSING_EMAIL,Row 4 has no email address\r\n'
    )


async def test_a_failed_file_exports_its_errors_too(
    client: Client, deps: GatewayDeps, gateway_settings: GatewaySettings, stack_info: StackInfo
) -> None:
    # Every row in error: the file fails NO_VALID_ROWS, the errors stay.
    body = b"email,first_name\r\nnope,A\r\n,B\r\n"
    tx_id = await _ingested(deps, gateway_settings, stack_info, body)
    assert (await load_transaction(deps.store, tx_id)).status == TxStatus.FAILED
    exported = await client.get(f"/api/v1/transactions/{tx_id}/errors.csv")
    lines = exported.content.decode().split("\r\n")
    assert lines[0] == "email,first_name,error_code,error_message"
    assert [line.split(",")[:3] for line in lines[1:-1]] == [
        ["nope", "A", "INVALID_EMAIL"],
        ["", "B", "MISSING_EMAIL"],
    ]


def _stored(tx_id: str, row: int, fields: list[str], code: str = "INVALID_EMAIL") -> Any:
    error = RowError(code=code, message=f"m{row}", row=row, recovery_action="fix it")
    return to_document(
        StoredRowError(id=f"{tx_id}:{row}", transaction_id=tx_id, error=error, fields=fields)
    )


async def _insert_tx(deps: GatewayDeps, tx_id: str, tenant: str, columns: list[str]) -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    tx = Transaction(
        id=tx_id,
        tenant=tenant,
        status=TxStatus.PROCESSING,
        template_id="t",
        source=S3Location(bucket="b", key="k"),
        columns=columns,
        created_at=now,
        updated_at=now,
    )
    await deps.store.transactions.insert_one(to_document(tx))


async def test_the_export_pages_through_the_store_in_row_order(deps: GatewayDeps) -> None:
    await _insert_tx(deps, "tx1", TENANT, ["email", "name"])
    rows = [11, 2, 7, 5]
    await deps.store.row_errors.insert_many(
        [_stored("tx1", row, [f"e{row}", f"n{row}"]) for row in rows]
    )
    # A row with too few fields is padded: its error columns stay in place.
    await deps.store.row_errors.insert_one(_stored("tx1", 3, ["e3"], "FIELD_COUNT_MISMATCH"))
    tx = await load_transaction(deps.store, "tx1")
    chunks = [chunk async for chunk in row_errors_csv(deps.store, tx, page_size=2)]
    assert len(chunks) == 3  # pages of 2, 2 and 1
    assert b"".join(chunks).decode() == (
        "email,name,error_code,error_message\r\n"
        "e2,n2,INVALID_EMAIL,m2\r\n"
        "e3,,FIELD_COUNT_MISMATCH,m3\r\n"
        "e5,n5,INVALID_EMAIL,m5\r\n"
        "e7,n7,INVALID_EMAIL,m7\r\n"
        "e11,n11,INVALID_EMAIL,m11\r\n"
    )


async def test_a_large_export_through_the_api(client: Client, deps: GatewayDeps) -> None:
    await _insert_tx(deps, "tx1", TENANT, ["email"])
    count = 1203  # more than two pages of the export
    await deps.store.row_errors.insert_many(
        [_stored("tx1", row, [f"u{row}"]) for row in range(2, count + 2)]
    )
    response = await client.get("/api/v1/transactions/tx1/errors.csv")
    lines = response.content.decode().split("\r\n")
    assert len(lines) == count + 2  # the header, the rows, the empty string after the last
    assert lines[1] == "u2,INVALID_EMAIL,m2"
    assert lines[-2] == f"u{count + 1},INVALID_EMAIL,m{count + 1}"


async def test_another_tenants_or_a_missing_transaction_is_404(
    make_client: ClientFactory, deps: GatewayDeps
) -> None:
    await _insert_tx(deps, "tx1", "someone-else", ["email"])
    await deps.store.row_errors.insert_one(_stored("tx1", 2, ["secret@example.com"]))
    async with make_client() as client:
        for tx_id in ("tx1", "missing"):
            for path in ("errors.csv", "errors"):
                response = await client.get(f"/api/v1/transactions/{tx_id}/{path}")
                assert response.status_code == 404, response.text
                assert response.json()["error"]["code"] == "TRANSACTION_NOT_FOUND"
    other = await issue_key(deps.store, "someone-else")
    async with make_client(api_key=other) as client:
        response = await client.get("/api/v1/transactions/tx1/errors.csv")
        assert response.status_code == 200
        assert "secret@example.com" in response.text
    async with make_client(api_key=None) as client:
        response = await client.get("/api/v1/transactions/tx1/errors.csv", headers=bearer("x"))
        assert response.status_code == 401


async def test_the_status_follows_ingest_while_processing(
    client: Client, deps: GatewayDeps
) -> None:
    await _insert_tx(deps, "tx1", TENANT, ["email"])
    await deps.store.transactions.update_one(
        {"_id": "tx1"}, {"$set": {"ingest_progress": {"valid": 500, "invalid": 4}}}
    )
    body = (await client.get("/api/v1/transactions/tx1/status")).json()
    assert body["progress"] == {
        "total_messages": 504,
        "processed_messages": 500,
        "percentage": 0.0,
    }
    assert body["estimated_completion"] is None
