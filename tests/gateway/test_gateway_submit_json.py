"""Submitting a file already in the bucket (JSON with ``source.s3_uri``), and ``metadata``
on both kinds of submission, against the real stack (ingest is not running here)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from services.gateway.deps import GatewayDeps
from shared.documents import S3Location, Transaction, from_document
from shared.events import TxAccepted
from shared.settings import GatewaySettings
from shared.topology import Subjects
from tests.gateway.conftest import TENANT, ClientFactory
from tests.gateway.test_gateway_api import IN_TWO_DAYS, PLUS_ONE

Client = AsyncTestClient[Litestar]

CSV = b"email,first_name\nada@example.com,Ada\nalan@example.com,Alan\n"


async def _template(client: Client) -> str:
    response = await client.post(
        "/api/v1/templates",
        json={"name": "welcome", "subject": "Hi {{ first_name }}", "text": "Hello"},
    )
    assert response.status_code == 201, response.text
    template_id: str = response.json()["id"]
    return template_id


async def _put(
    deps: GatewayDeps, settings: GatewaySettings, body: bytes = CSV, prefix: str | None = None
) -> str:
    """A new object of ``body`` under the tenant's prefix (or ``prefix``); its s3:// URI."""
    where = f"uploads/{TENANT}/" if prefix is None else prefix
    key = f"{where}sources/{uuid.uuid4().hex}.csv"
    await deps.s3.put_object(Bucket=settings.s3_bucket, Key=key, Body=body)
    return f"s3://{settings.s3_bucket}/{key}"


async def _submit_json(client: Client, body: dict[str, Any], **headers: str) -> httpx.Response:
    return await client.post("/api/v1/transactions", json=body, headers=headers)


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str)
    return error


# --- JSON source ---------------------------------------------------------------------------


async def test_json_submission_of_an_object_in_the_bucket(
    client: Client, deps: GatewayDeps, gateway_settings: GatewaySettings
) -> None:
    template_id = await _template(client)
    uri = await _put(deps, gateway_settings)
    response = await _submit_json(
        client,
        {
            "template_id": template_id,
            "source": {"s3_uri": uri},
            "callback_url": "https://example.com/hook",
            "schedule": {"send_at": IN_TWO_DAYS.astimezone(PLUS_ONE).isoformat()},
            "metadata": {"campaign": "autumn", "owner": "ada"},
        },
    )
    assert response.status_code == 202, response.text
    body = response.json()
    tx_id = body["transaction_id"]
    key = uri.removeprefix(f"s3://{gateway_settings.s3_bucket}/")
    assert body["status"] == "ACCEPT"
    assert body["filename"] == key.rpartition("/")[2]
    assert body["size_bytes"] == len(CSV)
    assert body["send_at"] == IN_TWO_DAYS.isoformat().replace("+00:00", "Z")
    assert body["metadata"] == {"campaign": "autumn", "owner": "ada"}

    raw = await deps.store.transactions.find_one({"_id": tx_id})
    tx = from_document(raw, Transaction)
    assert tx.source == S3Location(bucket=gateway_settings.s3_bucket, key=key)
    assert tx.tenant == TENANT
    assert tx.callback_url == "https://example.com/hook"
    assert tx.metadata == {"campaign": "autumn", "owner": "ada"}
    accepted = await deps.broker.js.get_last_msg("TX_ACCEPTED", Subjects.TX_ACCEPTED)
    assert msgspec.json.decode(accepted.data or b"", type=TxAccepted).transaction_id == tx_id
    shown = await client.get(f"/api/v1/transactions/{tx_id}")
    assert shown.json()["metadata"] == {"campaign": "autumn", "owner": "ada"}


async def test_json_submission_with_only_what_is_required(
    client: Client, deps: GatewayDeps, gateway_settings: GatewaySettings
) -> None:
    template_id = await _template(client)
    uri = await _put(deps, gateway_settings)
    response = await _submit_json(client, {"template_id": template_id, "source": {"s3_uri": uri}})
    assert response.status_code == 202, response.text
    assert response.json()["send_at"] is None
    assert response.json()["metadata"] == {}


async def test_json_source_errors(
    client: Client, deps: GatewayDeps, gateway_settings: GatewaySettings
) -> None:
    template_id = await _template(client)
    bucket = gateway_settings.s3_bucket

    async def submit(uri: str) -> httpx.Response:
        return await _submit_json(client, {"template_id": template_id, "source": {"s3_uri": uri}})

    missing = await submit(f"s3://{bucket}/uploads/{TENANT}/nothing-here.csv")
    assert _error(missing, 400, "SOURCE_NOT_FOUND")["details"]["field"] == "source.s3_uri"
    _error(await submit(f"s3://another-bucket/uploads/{TENANT}/x.csv"), 400, "SOURCE_NOT_ALLOWED")
    # In our bucket, but another tenant's files, or outside any tenant's prefix.
    theirs = await _put(deps, gateway_settings, prefix="uploads/globex/")
    _error(await submit(theirs), 400, "SOURCE_NOT_ALLOWED")
    loose = await _put(deps, gateway_settings, prefix="")
    _error(await submit(loose), 400, "SOURCE_NOT_ALLOWED")
    _error(await submit(f"s3://{bucket}/uploads/{TENANT}-x/a.csv"), 400, "SOURCE_NOT_ALLOWED")
    _error(await submit("https://example.com/a.csv"), 400, "VALIDATION_ERROR")
    _error(await submit(f"s3://{bucket}"), 400, "VALIDATION_ERROR")
    _error(await submit(await _put(deps, gateway_settings, b"")), 400, "EMPTY_FILE")
    assert await deps.store.transactions.count_documents({}) == 0


async def test_json_source_over_the_size_limit(
    make_client: ClientFactory, deps: GatewayDeps, gateway_settings: GatewaySettings
) -> None:
    uri = await _put(deps, gateway_settings)
    async with make_client(max_upload_bytes=len(CSV) - 1) as client:
        template_id = await _template(client)
        response = await _submit_json(
            client, {"template_id": template_id, "source": {"s3_uri": uri}}
        )
    error = _error(response, 413, "FILE_TOO_LARGE")
    assert error["details"]["max_bytes"] == len(CSV) - 1


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"template_id": "t", "source": {"s3_uri": "s3://b/k"}, "colour": "red"}, "colour"),
        ({"template_id": "t", "source": {"s3_uri": "s3://b/k", "etag": "x"}}, "etag"),
        ({"template_id": "t", "source": {"s3_uri": "s3://b/k"}, "schedule": {"at": "x"}}, "at"),
        ({"template_id": "t"}, "source"),
        ({"source": {"s3_uri": "s3://b/k"}}, "template_id"),
        ({"template_id": 7, "source": {"s3_uri": "s3://b/k"}}, "template_id"),
    ],
)
async def test_json_body_is_checked(
    client: Client, deps: GatewayDeps, body: dict[str, Any], code: str
) -> None:
    error = _error(await _submit_json(client, body), 400, "VALIDATION_ERROR")
    assert code in error["message"]
    assert await deps.store.transactions.count_documents({}) == 0


async def test_json_field_errors(
    client: Client, deps: GatewayDeps, gateway_settings: GatewaySettings
) -> None:
    template_id = await _template(client)
    source = {"s3_uri": await _put(deps, gateway_settings)}
    _error(
        await _submit_json(client, {"template_id": "nope", "source": source}),
        400,
        "TEMPLATE_NOT_FOUND",
    )
    _error(
        await _submit_json(
            client, {"template_id": template_id, "source": source, "callback_url": "ftp://x"}
        ),
        400,
        "INVALID_CALLBACK_URL",
    )
    _error(
        await _submit_json(
            client,
            {"template_id": template_id, "source": source, "schedule": {"send_at": "soon"}},
        ),
        400,
        "INVALID_SEND_AT",
    )
    malformed = await client.post(
        "/api/v1/transactions",
        content=b'{"template_id": ',
        headers={"Content-Type": "application/json"},
    )
    _error(malformed, 400, "VALIDATION_ERROR")
    huge = await _submit_json(
        client, {"template_id": template_id, "source": source, "callback_url": "x" * 70_000}
    )
    _error(huge, 413, "PAYLOAD_TOO_LARGE")


async def test_json_submission_with_an_idempotency_key(
    client: Client, deps: GatewayDeps, gateway_settings: GatewaySettings
) -> None:
    template_id = await _template(client)
    uri = await _put(deps, gateway_settings)
    body = {"template_id": template_id, "source": {"s3_uri": uri}, "metadata": {"a": "1"}}
    first = await _submit_json(client, body, **{"Idempotency-Key": "json-1"})
    assert first.status_code == 202, first.text
    again = await _submit_json(client, body, **{"Idempotency-Key": "json-1"})
    assert again.status_code == 200, again.text
    assert again.json() == first.json()

    # The same URI with other content (a new ETag) is another request.
    key = uri.removeprefix(f"s3://{gateway_settings.s3_bucket}/")
    await deps.s3.put_object(Bucket=gateway_settings.s3_bucket, Key=key, Body=CSV + CSV[6:])
    changed = await _submit_json(client, body, **{"Idempotency-Key": "json-1"})
    _error(changed, 409, "IDEMPOTENCY_KEY_REUSED")
    other_fields = {**body, "metadata": {"a": "2"}}
    _error(
        await _submit_json(client, other_fields, **{"Idempotency-Key": "json-1"}),
        409,
        "IDEMPOTENCY_KEY_REUSED",
    )
    assert await deps.store.transactions.count_documents({}) == 1


# --- metadata --------------------------------------------------------------------------------


async def test_form_metadata_is_stored_and_echoed(client: Client, deps: GatewayDeps) -> None:
    template_id = await _template(client)
    metadata = {"campaign": "autumn", "k" * 64: "v" * 512, "empty": ""}
    response = await client.post(
        "/api/v1/transactions",
        files={"file": ("people.csv", CSV, "text/csv")},
        data={"template_id": template_id, "metadata": msgspec.json.encode(metadata).decode()},
    )
    assert response.status_code == 202, response.text
    assert response.json()["metadata"] == metadata
    tx_id = response.json()["transaction_id"]
    raw = await deps.store.transactions.find_one({"_id": tx_id})
    assert from_document(raw, Transaction).metadata == metadata
    shown = await client.get(f"/api/v1/transactions/{tx_id}")
    assert shown.json()["metadata"] == metadata


_BAD_METADATA: list[tuple[Any, dict[str, Any]]] = [
    ({f"k{i}": "v" for i in range(51)}, {"max_keys": 50}),
    ({"k" * 65: "v"}, {"max_key_chars": 64}),
    ({"": "v"}, {"max_key_chars": 64}),
    ({"a.b": "v"}, {"key": "a.b"}),
    ({"$where": "v"}, {"key": "$where"}),
    ({"k": "v" * 513}, {"key": "k", "max_value_chars": 512}),
    ({"k": 1}, {"key": "k"}),
    ({"k": {"nested": "v"}}, {"key": "k"}),
    (["k", "v"], {}),
    ("text", {}),
]


@pytest.mark.parametrize(("metadata", "details"), _BAD_METADATA)
async def test_metadata_limits(
    client: Client,
    deps: GatewayDeps,
    gateway_settings: GatewaySettings,
    metadata: Any,
    details: dict[str, Any],
) -> None:
    template_id = await _template(client)
    as_form = await client.post(
        "/api/v1/transactions",
        files={"file": ("people.csv", CSV, "text/csv")},
        data={"template_id": template_id, "metadata": msgspec.json.encode(metadata).decode()},
    )
    as_json = await _submit_json(
        client,
        {
            "template_id": template_id,
            "source": {"s3_uri": await _put(deps, gateway_settings)},
            "metadata": metadata,
        },
    )
    for response in (as_form, as_json):
        error = _error(response, 400, "INVALID_METADATA")
        assert error["details"]["field"] == "metadata"
        assert details.items() <= error["details"].items()
    assert await deps.store.transactions.count_documents({}) == 0


async def test_form_metadata_that_is_not_json(client: Client) -> None:
    template_id = await _template(client)
    response = await client.post(
        "/api/v1/transactions",
        files={"file": ("people.csv", CSV, "text/csv")},
        data={"template_id": template_id, "metadata": "campaign=autumn"},
    )
    _error(response, 400, "INVALID_METADATA")


async def test_openapi_documents_the_submission(client: Client) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    post = schema["paths"]["/api/v1/transactions"]["post"]
    headers = {p["name"]: p for p in post["parameters"] if p["in"] == "header"}
    assert "Idempotency-Key" in headers
    content = post["requestBody"]["content"]
    assert set(content) == {"application/json", "multipart/form-data"}
    assert "metadata" in content["multipart/form-data"]["schema"]["properties"]
    assert content["application/json"]["schema"]["required"] == ["template_id", "source"]
    assert {"200", "202", "409"} <= set(post["responses"])
    assert "IDEMPOTENCY_KEY_REUSED" in post["responses"]["409"]["description"]
