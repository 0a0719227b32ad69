"""The gateway's HTTP API against the real stack: NATS, the Mongo-wire store and moto's S3."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from services.gateway.deps import GatewayDeps
from services.gateway.transactions import upload_key
from shared.documents import (
    RowError,
    S3Location,
    StatusEntry,
    StoredRowError,
    Transaction,
    to_document,
)
from shared.events import TxAccepted, TxStatusChanged
from shared.settings import GatewaySettings
from shared.status import MessageStatus, TxStatus
from shared.topology import Subjects
from tests.gateway.conftest import TENANT, ClientFactory

Client = AsyncTestClient[Litestar]

# Every column the template of ``_template`` uses: the gateway checks the header.
CSV = b"email,first_name,name\nada@example.com,Ada,Ada L\nalan@example.com,Alan,Alan T\n"
# A send time within the limits (at most 30 days ahead), in another offset than UTC's.
IN_TWO_DAYS = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
PLUS_ONE = timezone(timedelta(hours=1))


async def _template(client: Client) -> str:
    response = await client.post(
        "/api/v1/templates",
        json={"name": "welcome", "subject": "Hi {{ first_name }}", "text": "Hello {{ name }}"},
    )
    assert response.status_code == 201, response.text
    template_id: str = response.json()["id"]
    return template_id


async def _submit(client: Client, template_id: str, body: bytes = CSV, **fields: str) -> Any:
    return await client.post(
        "/api/v1/transactions",
        files={"file": ("people.csv", body, "text/csv")},
        data={"template_id": template_id, **fields},
    )


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert isinstance(error["details"], dict)
    return error


async def _insert_tx(
    deps: GatewayDeps, tx_id: str, status: TxStatus, at: datetime, **kw: Any
) -> None:
    tx = Transaction(
        id=tx_id,
        tenant=TENANT,
        status=status,
        template_id="t",
        source=S3Location(bucket="b", key=f"uploads/{TENANT}/{tx_id}.csv"),
        status_history=[StatusEntry(status=TxStatus.ACCEPT, at=at), *kw.pop("history", [])],
        created_at=at,
        updated_at=at,
        **kw,
    )
    await deps.store.transactions.insert_one(to_document(tx))


# --- templates ---------------------------------------------------------------------------


async def test_create_and_get_template(client: Client) -> None:
    response = await client.post(
        "/api/v1/templates",
        json={
            "name": "welcome",
            "subject": "Hi {{ first_name }}",
            "html": "<p>{{ greeting }} {% for x in items %}{{ x }}{% endfor %}</p>",
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"id", "name", "placeholders", "marketing", "created_at"}
    assert body["placeholders"] == ["first_name", "greeting", "items"]
    got = await client.get(f"/api/v1/templates/{body['id']}")
    assert got.status_code == 200
    assert got.json()["subject"] == "Hi {{ first_name }}"
    assert got.json()["created_at"] == body["created_at"]
    _error(await client.get("/api/v1/templates/nope"), 404, "TEMPLATE_NOT_FOUND")


async def test_template_syntax_error(client: Client) -> None:
    response = await client.post(
        "/api/v1/templates", json={"name": "x", "subject": "ok", "text": "Hello {{ name"}
    )
    error = _error(response, 400, "TEMPLATE_SYNTAX_ERROR")
    assert "text part" in error["message"]


async def test_template_needs_a_body(client: Client) -> None:
    response = await client.post("/api/v1/templates", json={"name": "x", "subject": "s"})
    _error(response, 400, "VALIDATION_ERROR")


async def test_unknown_json_field_is_rejected(client: Client) -> None:
    response = await client.post(
        "/api/v1/templates", json={"name": "x", "subject": "s", "text": "t", "colour": "red"}
    )
    error = _error(response, 400, "VALIDATION_ERROR")
    assert "colour" in response.text, error


async def test_malformed_json_is_a_validation_error(client: Client) -> None:
    response = await client.post(
        "/api/v1/templates", content=b"{not json", headers={"content-type": "application/json"}
    )
    _error(response, 400, "VALIDATION_ERROR")


# --- submission --------------------------------------------------------------------------


async def test_submit_transaction(
    client: Client, deps: GatewayDeps, gateway_settings: GatewaySettings
) -> None:
    template_id = await _template(client)
    response = await _submit(
        client,
        template_id,
        callback_url="https://hooks.example.com/email",
        send_at=IN_TWO_DAYS.astimezone(PLUS_ONE).isoformat(),
    )
    assert response.status_code == 202, response.text
    body = response.json()
    tx_id = body["transaction_id"]
    assert body["status"] == "ACCEPT"
    assert body["send_at"] == IN_TWO_DAYS.isoformat().replace("+00:00", "Z")
    assert body["size_bytes"] == len(CSV)

    key = upload_key(TENANT, tx_id)
    obj = await deps.s3.get_object(Bucket=gateway_settings.s3_bucket, Key=key)
    async with obj["Body"] as stream:
        assert await stream.read() == CSV

    raw = await deps.store.transactions.find_one({"_id": tx_id})
    assert raw is not None
    assert raw["status"] == "ACCEPT"
    assert raw["tenant"] == TENANT
    assert raw["template_id"] == template_id
    assert raw["source"] == {"bucket": gateway_settings.s3_bucket, "key": key}
    assert [entry["status"] for entry in raw["status_history"]] == ["ACCEPT"]

    js = deps.broker.js
    accepted = await js.get_last_msg("TX_ACCEPTED", Subjects.TX_ACCEPTED)
    assert msgspec.json.decode(accepted.data or b"", type=TxAccepted).transaction_id == tx_id
    assert accepted.headers is not None
    assert accepted.headers["Nats-Msg-Id"] == f"{tx_id}:accepted"
    status = await js.get_last_msg("TX_STATUS", Subjects.tx_status("ACCEPT"))
    changed = msgspec.json.decode(status.data or b"", type=TxStatusChanged)
    assert (changed.transaction_id, changed.old_status, changed.new_status) == (
        tx_id,
        None,
        TxStatus.ACCEPT,
    )


async def test_submit_streams_parts(
    make_client: ClientFactory, deps: GatewayDeps, gateway_settings: GatewaySettings
) -> None:
    """A file larger than a part goes up as a multipart upload (S3 parts are >= 5 MiB)."""
    part = 5 * 1024 * 1024
    body = b"email,first_name,name\n" + b"someone@example.com,S,S\n" * (part // 24 + 1000)
    async with make_client(upload_part_bytes=part) as client:
        template_id = await _template(client)
        response = await _submit(client, template_id, body)
    assert response.status_code == 202, response.text
    obj = await deps.s3.get_object(
        Bucket=gateway_settings.s3_bucket,
        Key=upload_key(TENANT, response.json()["transaction_id"]),
    )
    async with obj["Body"] as stream:
        assert await stream.read() == body
    assert obj["ContentLength"] == len(body)


async def test_oversized_upload(
    make_client: ClientFactory, deps: GatewayDeps, gateway_settings: GatewaySettings
) -> None:
    async with make_client(max_upload_bytes=32) as client:
        template_id = await _template(client)
        response = await _submit(client, template_id)
    _error(response, 413, "FILE_TOO_LARGE")
    assert await deps.store.transactions.count_documents({}) == 0
    listed = await deps.s3.list_objects_v2(Bucket=gateway_settings.s3_bucket, Prefix="uploads/")
    keys = [o["Key"] for o in listed.get("Contents", [])]
    uploads = await deps.s3.list_multipart_uploads(Bucket=gateway_settings.s3_bucket)
    assert all(f"{TENANT}/" not in k or k.endswith(".csv") for k in keys)
    assert uploads.get("Uploads", []) == []


async def test_oversized_announced_body(make_client: ClientFactory) -> None:
    """A Content-Length beyond the limit is refused before anything is read."""
    async with make_client(max_upload_bytes=1) as client:
        template_id = await _template(client)
        response = await _submit(client, template_id, b"x" * (128 * 1024))
    _error(response, 413, "FILE_TOO_LARGE")


async def test_submission_errors(client: Client, deps: GatewayDeps) -> None:
    template_id = await _template(client)
    error = _error(await _submit(client, "0" * 32), 400, "TEMPLATE_NOT_FOUND")
    assert error["details"]["field"] == "template_id"
    _error(
        await client.post(
            "/api/v1/transactions", files={"template_id": (None, template_id.encode())}
        ),
        400,
        "MISSING_FILE",
    )
    _error(
        await _submit(client, template_id, callback_url="ftp://example.com/x"),
        400,
        "INVALID_CALLBACK_URL",
    )
    _error(
        await _submit(client, template_id, send_at="2030-01-31T09:00:00"), 400, "INVALID_SEND_AT"
    )
    _error(await _submit(client, template_id, send_at="tomorrow"), 400, "INVALID_SEND_AT")
    _error(await _submit(client, template_id, colour="red"), 400, "VALIDATION_ERROR")
    _error(await _submit(client, template_id, b""), 400, "EMPTY_FILE")
    _error(
        await client.post(
            "/api/v1/transactions",
            content=b"template_id=x",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ),
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    )
    assert await deps.store.transactions.count_documents({}) == 0


# --- reading -----------------------------------------------------------------------------


async def test_list_with_filter_and_cursor(client: Client, deps: GatewayDeps) -> None:
    base = datetime(2030, 1, 1, tzinfo=UTC)
    # Two share an instant: the cursor must still split them exactly.
    times = [base, base + timedelta(seconds=1), base + timedelta(seconds=1), base + timedelta(2)]
    statuses = [TxStatus.ACCEPT, TxStatus.PROCESSING, TxStatus.ACCEPT, TxStatus.ACCEPT]
    for i, (at, status) in enumerate(zip(times, statuses, strict=True)):
        await _insert_tx(deps, f"tx{i}", status, at)

    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 1}
        if cursor is not None:
            params["cursor"] = cursor
        response = await client.get("/api/v1/transactions", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [item["transaction_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["tx3", "tx2", "tx1", "tx0"]

    response = await client.get("/api/v1/transactions", params={"status": "ACCEPT", "limit": 2})
    first = response.json()
    assert [i["transaction_id"] for i in first["items"]] == ["tx3", "tx2"]
    response = await client.get(
        "/api/v1/transactions",
        params={"status": "ACCEPT", "limit": 2, "cursor": first["next_cursor"]},
    )
    assert [i["transaction_id"] for i in response.json()["items"]] == ["tx0"]
    assert response.json()["next_cursor"] is None

    _error(await client.get("/api/v1/transactions", params={"cursor": "@@"}), 400, "INVALID_CURSOR")
    _error(await client.get("/api/v1/transactions", params={"limit": 201}), 400, "VALIDATION_ERROR")
    _error(
        await client.get("/api/v1/transactions", params={"status": "NOPE"}), 400, "VALIDATION_ERROR"
    )


async def test_get_transaction(client: Client, deps: GatewayDeps) -> None:
    at = datetime(2030, 1, 1, tzinfo=UTC)
    await _insert_tx(deps, "tx1", TxStatus.PROCESSING, at, counters={"total": 3, "invalid": 1})
    response = await client.get("/api/v1/transactions/tx1")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {
        "transaction_id",
        "status",
        "template_id",
        "callback_url",
        "send_at",
        "metadata",
        "counters",
        "ingest_progress",
        "status_history",
        "stats",
        "failure",
        "schedule",
        "cancel_requested_at",
        "retried_as",
        "created_at",
        "updated_at",
    }
    assert body["counters"] == {
        "total": 3,
        "invalid": 1,
        **{status.lower(): 0 for status in MessageStatus},
    }
    assert body["status_history"] == [
        {"status": "ACCEPT", "timestamp": "2030-01-01T00:00:00Z", "metadata": {}}
    ]
    assert body["stats"] is None
    _error(await client.get("/api/v1/transactions/nope"), 404, "TRANSACTION_NOT_FOUND")


async def test_row_errors(client: Client, deps: GatewayDeps) -> None:
    await _insert_tx(deps, "tx1", TxStatus.PROCESSING, datetime(2030, 1, 1, tzinfo=UTC))
    rows = [7, 3, 5]
    await deps.store.row_errors.insert_many(
        [
            to_document(
                StoredRowError(
                    id=f"tx1:{row}",
                    transaction_id="tx1",
                    error=RowError(
                        code="INVALID_EMAIL",
                        message="not an email address",
                        row=row,
                        field="email",
                        value=f"bad{row}",
                        expected_format="name@domain",
                        recovery_action="fix the address and resubmit the row",
                    ),
                )
            )
            for row in rows
        ]
    )
    first = (await client.get("/api/v1/transactions/tx1/errors", params={"limit": 2})).json()
    assert first["items"][0] == {
        "code": "INVALID_EMAIL",
        "message": "not an email address",
        "details": {
            "row": 3,
            "field": "email",
            "value": "bad3",
            "expected_format": "name@domain",
        },
        "recovery_action": "fix the address and resubmit the row",
    }
    assert [i["details"]["row"] for i in first["items"]] == [3, 5]
    rest = await client.get(
        "/api/v1/transactions/tx1/errors", params={"limit": 2, "cursor": first["next_cursor"]}
    )
    assert [i["details"]["row"] for i in rest.json()["items"]] == [7]
    assert rest.json()["next_cursor"] is None
    _error(await client.get("/api/v1/transactions/nope/errors"), 404, "TRANSACTION_NOT_FOUND")


async def test_status_view(client: Client, deps: GatewayDeps) -> None:
    ready = datetime.now(UTC) - timedelta(seconds=60)
    await _insert_tx(
        deps,
        "tx1",
        TxStatus.SENT,
        ready - timedelta(seconds=10),
        counters={"total": 40, "delivered": 10, "bounced": 2, "sent": 28},
        history=[StatusEntry(status=TxStatus.READY_TO_SEND, at=ready)],
    )
    response = await client.get("/api/v1/transactions/tx1/status")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"transaction_id", "status", "progress", "estimated_completion"}
    assert body["progress"] == {"total_messages": 40, "processed_messages": 12, "percentage": 30.0}
    eta = datetime.fromisoformat(body["estimated_completion"])
    # 12 in ~60 s: the other 28 take ~140 s more.
    expected = datetime.now(UTC) + timedelta(seconds=140)
    assert abs((eta - expected).total_seconds()) < 5
    _error(await client.get("/api/v1/transactions/nope/status"), 404, "TRANSACTION_NOT_FOUND")


# --- the rest ----------------------------------------------------------------------------


async def test_health(client: Client) -> None:
    assert (await client.get("/health/live")).status_code == 200
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"nats": True, "store": True}


async def test_unknown_route_and_method(client: Client) -> None:
    _error(await client.get("/api/v1/nothing-here"), 404, "NOT_FOUND")
    _error(await client.delete("/api/v1/templates"), 405, "METHOD_NOT_ALLOWED")


async def test_openapi(client: Client) -> None:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    submit = spec["paths"]["/api/v1/transactions"]["post"]
    assert "multipart/form-data" in submit["requestBody"]["content"]
    assert {"202", "400", "413", "503"} <= set(submit["responses"])
    error_schema = submit["responses"]["400"]["content"]["application/json"]["schema"]
    assert error_schema["$ref"].endswith("ErrorBody")


@pytest.mark.parametrize("path", ["/api/v1/transactions/x", "/api/v1/templates/x"])
async def test_not_found_shapes(client: Client, path: str) -> None:
    assert (await client.get(path)).status_code == 404
