"""``/api/v1/suppressions``: a tenant's list read, added to and taken from through the API,
and what ingest makes of an address put there."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from litestar import Litestar
from litestar.testing import AsyncTestClient

from services.gateway.deps import GatewayDeps
from shared.documents import Suppression, suppression_id, to_document
from shared.records import load_transaction
from shared.settings import GatewaySettings
from shared.status import MessageStatus
from stack.launcher import StackInfo
from tests.conftest import issue_key
from tests.gateway.campaign import ingest
from tests.gateway.conftest import TENANT, ClientFactory

Client = AsyncTestClient[Litestar]

PATH = "/api/v1/suppressions"


async def test_put_get_delete_an_address(client: Client, deps: GatewayDeps) -> None:
    created = await client.put(f"{PATH}/Ada.Lovelace@Example.COM")
    assert created.status_code == 201, created.text
    entry = created.json()
    assert (entry["email"], entry["reason"]) == ("ada.lovelace@example.com", "manual")
    stored = await deps.store.suppressions.find_one(
        {"_id": suppression_id(TENANT, "ada.lovelace@example.com")}
    )
    assert stored is not None
    assert (stored["tenant"], stored["email"], stored["reason"]) == (
        TENANT,
        "ada.lovelace@example.com",
        "manual",
    )

    # Idempotent: the entry as it was, its first reason kept.
    again = await client.put(f"{PATH}/ada.lovelace@example.com", json={"reason": "asked by phone"})
    assert again.status_code == 200, again.text
    assert again.json() == entry

    found = await client.get(f"{PATH}/ADA.LOVELACE@example.com")
    assert found.status_code == 200, found.text
    assert found.json() == entry

    removed = await client.delete(f"{PATH}/ada.lovelace@example.com")
    assert removed.status_code == 204, removed.text
    assert removed.content == b""
    for response in (
        await client.get(f"{PATH}/ada.lovelace@example.com"),
        await client.delete(f"{PATH}/ada.lovelace@example.com"),
    ):
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "SUPPRESSION_NOT_FOUND"


async def test_a_reason_given_and_bad_input(client: Client) -> None:
    given = await client.put(f"{PATH}/bob+news@example.org", json={"reason": "legal hold"})
    assert given.status_code == 201, given.text
    assert given.json()["reason"] == "legal hold"
    assert given.json()["email"] == "bob+news@example.org"

    for email in ("not-an-address", "a@b", "two@@example.com"):
        for method in ("GET", "PUT", "DELETE"):
            bad = await client.request(method, f"{PATH}/{email}")
            assert bad.status_code == 400, (method, email, bad.text)
            error = bad.json()["error"]
            assert error["code"] == "VALIDATION_ERROR"
            assert error["details"] == {"field": "email", "value": email}

    unknown = await client.put(f"{PATH}/c@example.org", json={"why": "x"})
    assert unknown.status_code == 400, unknown.text
    empty = await client.put(f"{PATH}/c@example.org", json={"reason": ""})
    assert empty.status_code == 400, empty.text


async def test_the_list_is_newest_first_and_the_tenants_own(
    client: Client, deps: GatewayDeps, make_client: ClientFactory
) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=400)
    # Two entries at the same instant: the cursor must not lose one of them. A year and more
    # back, and 40 days apart: further than the largest window of time the list reads.
    times = [start, start + timedelta(days=40), start + timedelta(days=40), start]
    entries = [
        Suppression(
            id=suppression_id(tenant, f"u{n}@example.com"),
            tenant=tenant,
            email=f"u{n}@example.com",
            reason="bounce",
            created_at=at,
        )
        for n, at in enumerate(times)
        for tenant in (TENANT, "globex")
    ]
    await deps.store.suppressions.insert_many([to_document(e) for e in entries])

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 1}
        if cursor is not None:
            params["cursor"] = cursor
        page = (await client.get(PATH, params=params)).json()
        seen += [item["email"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["u2@example.com", "u1@example.com", "u3@example.com", "u0@example.com"]

    bad = await client.get(PATH, params={"cursor": "nope"})
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "INVALID_CURSOR"

    # Another tenant's entries answer as missing ones, and its list holds only its own.
    globex = await issue_key(deps.store, "globex")
    async with make_client(api_key=globex) as other:
        listed = (await other.get(PATH, params={"limit": 200})).json()["items"]
        assert len(listed) == 4
        await other.delete(f"{PATH}/u0@example.com")
    assert (await client.get(f"{PATH}/u0@example.com")).status_code == 200
    await client.delete(f"{PATH}/u1@example.com")
    async with make_client(api_key=globex) as other:
        assert (await other.get(f"{PATH}/u1@example.com")).status_code == 200
        assert (await other.get(f"{PATH}/u0@example.com")).status_code == 404


async def test_an_address_suppressed_through_the_api_is_suppressed_in_a_new_campaign(
    client: Client, deps: GatewayDeps, gateway_settings: GatewaySettings, stack_info: StackInfo
) -> None:
    assert (await client.put(f"{PATH}/Grace@Example.com")).status_code == 201
    body = f"email,first_name\ngrace@example.com,Grace\nalan-{uuid.uuid4().hex[:6]}@example.com,A\n"

    tx_id = await ingest(deps, gateway_settings, stack_info, body.encode())

    tx = await load_transaction(deps.store, tx_id)
    assert tx.counters["suppressed"] == 1
    grace = await deps.store.messages.find_one({"transaction_id": tx_id, "row": 2})
    assert grace is not None
    assert grace["status"] == MessageStatus.SUPPRESSED
    listed = await client.get(
        f"/api/v1/transactions/{tx_id}/messages", params={"status": "SUPPRESSED"}
    )
    assert [m["email"] for m in listed.json()["items"]] == ["grace@example.com"]
