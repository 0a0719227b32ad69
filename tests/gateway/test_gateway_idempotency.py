"""``Idempotency-Key`` on ``POST /api/v1/transactions``, against the real stack.

A replay answers 200 with the first answer's body and leaves nothing behind: one
transaction, one ``TxAccepted``, one object in the bucket.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from services.gateway.app import create_app
from services.gateway.deps import GatewayDeps
from services.gateway.transactions import upload_key
from shared.settings import GatewaySettings
from shared.status import IdempotencyState
from tests.conftest import issue_key
from tests.gateway.conftest import TENANT, ClientFactory, bearer

Client = AsyncTestClient[Litestar]

CSV = b"email,first_name\nada@example.com,Ada\nalan@example.com,Alan\n"
KEY = "order-2026-11-28-0001"


async def _template(client: Client | httpx.AsyncClient) -> str:
    response = await client.post(
        "/api/v1/templates",
        json={"name": "welcome", "subject": "Hi {{ first_name }}", "text": "Hello"},
    )
    assert response.status_code == 201, response.text
    template_id: str = response.json()["id"]
    return template_id


async def _submit(
    client: Client | httpx.AsyncClient,
    template_id: str,
    key: str | None = KEY,
    body: bytes = CSV,
    **fields: str,
) -> httpx.Response:
    return await client.post(
        "/api/v1/transactions",
        files={"file": ("people.csv", body, "text/csv")},
        data={"template_id": template_id, **fields},
        headers={} if key is None else {"Idempotency-Key": key},
    )


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    return error


async def _accepted_messages(deps: GatewayDeps) -> int:
    info = await deps.broker.js.stream_info("TX_ACCEPTED")
    return info.state.messages


async def _uploads(deps: GatewayDeps, settings: GatewaySettings, tenant: str = TENANT) -> set[str]:
    """Every object under the tenant's prefix (the bucket outlives each test's database)."""
    listed = await deps.s3.list_objects_v2(Bucket=settings.s3_bucket, Prefix=f"uploads/{tenant}/")
    return {item["Key"] for item in listed.get("Contents", [])}


async def test_replay_answers_the_first_body(
    client: Client, deps: GatewayDeps, gateway_settings: GatewaySettings
) -> None:
    template_id = await _template(client)
    before = await _uploads(deps, gateway_settings)
    first = await _submit(client, template_id, metadata='{"campaign": "autumn"}')
    assert first.status_code == 202, first.text
    tx_id = first.json()["transaction_id"]

    again = await _submit(client, template_id, metadata='{"campaign": "autumn"}')
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert again.json()["metadata"] == {"campaign": "autumn"}

    assert await deps.store.transactions.count_documents({}) == 1
    assert await _accepted_messages(deps) == 1
    # The replay's own upload is gone: only the first one stays.
    assert await _uploads(deps, gateway_settings) - before == {upload_key(TENANT, tx_id)}
    record = await deps.store.idempotency_keys.find_one({"_id": f"{TENANT}:{KEY}"})
    assert record is not None
    assert record["state"] == IdempotencyState.DONE
    assert record["transaction_id"] == tx_id
    assert record["expires_at"] - record["created_at"] >= timedelta(hours=24)


async def test_same_key_with_another_request_is_refused(
    client: Client, deps: GatewayDeps, gateway_settings: GatewaySettings
) -> None:
    template_id = await _template(client)
    before = await _uploads(deps, gateway_settings)
    first = await _submit(client, template_id)
    assert first.status_code == 202, first.text

    other_file = CSV + b"grace@example.com,Grace\n"
    _error(await _submit(client, template_id, body=other_file), 409, "IDEMPOTENCY_KEY_REUSED")
    _error(
        await _submit(client, template_id, callback_url="https://example.com/hook"),
        409,
        "IDEMPOTENCY_KEY_REUSED",
    )
    _error(await _submit(client, template_id, metadata='{"a": "b"}'), 409, "IDEMPOTENCY_KEY_REUSED")
    # A JSON submission is another request too, even naming the very same object.
    uploaded = upload_key(TENANT, first.json()["transaction_id"])
    as_json = await client.post(
        "/api/v1/transactions",
        json={
            "template_id": template_id,
            "source": {"s3_uri": f"s3://{gateway_settings.s3_bucket}/{uploaded}"},
        },
        headers={"Idempotency-Key": KEY},
    )
    _error(as_json, 409, "IDEMPOTENCY_KEY_REUSED")

    assert await deps.store.transactions.count_documents({}) == 1
    assert await _accepted_messages(deps) == 1
    assert await _uploads(deps, gateway_settings) - before == {uploaded}
    # Without a key, the same request is a new transaction.
    assert (await _submit(client, template_id, key=None)).status_code == 202
    assert await deps.store.transactions.count_documents({}) == 2


async def test_concurrent_duplicates_make_one_transaction(
    gateway_settings: GatewaySettings, deps: GatewayDeps, api_key: str
) -> None:
    # One event loop for the app and the test, so the requests truly overlap.
    app = create_app(gateway_settings, deps)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://gateway", headers=bearer(api_key)
    ) as client:
        template_id = await _template(client)
        before = await _uploads(deps, gateway_settings)
        body = CSV * 2000  # big enough that the uploads interleave
        answers = await asyncio.gather(*(_submit(client, template_id, body=body) for _ in range(4)))

    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200, 200, 200, 202], [answer.text for answer in answers]
    ids = {answer.json()["transaction_id"] for answer in answers}
    assert len(ids) == 1
    assert await deps.store.transactions.count_documents({}) == 1
    assert await _accepted_messages(deps) == 1
    assert await _uploads(deps, gateway_settings) - before == {upload_key(TENANT, ids.pop())}


async def test_keys_belong_to_a_tenant(
    client: Client, make_client: ClientFactory, deps: GatewayDeps
) -> None:
    template_id = await _template(client)
    first = await _submit(client, template_id)
    assert first.status_code == 202, first.text

    other_key = await issue_key(deps.store, "globex")
    async with make_client(api_key=other_key) as other:
        other_template = await _template(other)
        theirs = await _submit(other, other_template)
    assert theirs.status_code == 202, theirs.text
    assert theirs.json()["transaction_id"] != first.json()["transaction_id"]
    assert await deps.store.transactions.count_documents({}) == 2


@pytest.mark.parametrize("key", ["", "a" * 256, "tab\there", "ключ"])
async def test_invalid_keys(client: Client, deps: GatewayDeps, key: str) -> None:
    template_id = await _template(client)
    response = await client.post(
        "/api/v1/transactions",
        files={"file": ("people.csv", CSV, "text/csv")},
        data={"template_id": template_id},
        headers=[(b"Idempotency-Key", key.encode())],
    )
    error = _error(response, 400, "INVALID_IDEMPOTENCY_KEY")
    assert error["details"] == {"header": "Idempotency-Key"}
    assert await deps.store.transactions.count_documents({}) == 0


async def test_longest_printable_key_is_accepted(client: Client) -> None:
    template_id = await _template(client)
    key = "".join(chr(32 + i % 95) for i in range(255))
    assert (await _submit(client, template_id, key=key)).status_code == 202
    assert (await _submit(client, template_id, key=key)).status_code == 200


async def test_expired_key_is_free_again(client: Client, deps: GatewayDeps) -> None:
    template_id = await _template(client)
    first = await _submit(client, template_id)
    assert first.status_code == 202, first.text
    record_id = f"{TENANT}:{KEY}"
    info = await deps.store.idempotency_keys.index_information()
    assert info["expiry"]["expireAfterSeconds"] == 0

    # Past its time but not yet swept: it counts as absent.
    record = await deps.store.idempotency_keys.find_one({"_id": record_id})
    assert record is not None
    past = record["created_at"] - timedelta(seconds=1)
    await deps.store.idempotency_keys.update_one({"_id": record_id}, {"$set": {"expires_at": past}})
    second = await _submit(client, template_id, metadata='{"round": "2"}')
    assert second.status_code == 202, second.text
    assert second.json()["transaction_id"] != first.json()["transaction_id"]

    # The store's TTL sweep removes what is past its time (the embedded store's command
    # runs the sweep now instead of within the minute).
    await deps.store.idempotency_keys.update_one({"_id": record_id}, {"$set": {"expires_at": past}})
    await deps.store.client.admin.command("secantusAdmin.pruneTtl")
    assert await deps.store.idempotency_keys.find_one({"_id": record_id}) is None


async def test_a_key_left_pending(
    make_client: ClientFactory, deps: GatewayDeps, gateway_settings: GatewaySettings
) -> None:
    """A holder that never finished: in use for a while, then settled by the next request."""
    async with make_client(idempotency_wait_seconds=0.3) as client:
        template_id = await _template(client)
        first = await _submit(client, template_id)
        assert first.status_code == 202, first.text
        tx_id = first.json()["transaction_id"]
        record_id = f"{TENANT}:{KEY}"
        keys = deps.store.idempotency_keys

        # Recorded but never marked DONE: the waiter marks it and replays.
        await keys.update_one({"_id": record_id}, {"$set": {"state": IdempotencyState.PENDING}})
        replay = await _submit(client, template_id)
        assert replay.status_code == 200, replay.text
        assert replay.json() == first.json()
        record = await keys.find_one({"_id": record_id})
        assert record is not None
        assert record["state"] == IdempotencyState.DONE

        # Claimed, no transaction yet, recently: still in use.
        await keys.update_one(
            {"_id": record_id},
            {"$set": {"state": IdempotencyState.PENDING, "transaction_id": "gone"}},
        )
        busy = await _submit(client, template_id)
        _error(busy, 409, "IDEMPOTENCY_KEY_IN_USE")
        assert busy.headers["Retry-After"] == "1"

        # Claimed long ago and no transaction: abandoned, so this request takes the key.
        old = record["created_at"] - timedelta(minutes=10)
        await keys.update_one({"_id": record_id}, {"$set": {"created_at": old}})
        taken = await _submit(client, template_id)
        assert taken.status_code == 202, taken.text
        assert taken.json()["transaction_id"] != tx_id

    assert await deps.store.transactions.count_documents({}) == 2
