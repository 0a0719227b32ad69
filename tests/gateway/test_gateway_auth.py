"""API keys at the gateway: who may call what, tenants kept apart, keys kept secret, rates.

Every ``/api/v1`` endpoint is called with each kind of credential; the table of answers must
equal the expected one. Another tenant's ids answer exactly as ids that do not exist.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog
from litestar import Litestar
from litestar.testing import AsyncTestClient
from structlog.testing import LogCapture

from services.gateway.deps import GatewayDeps
from services.gateway.webhooks import WEBHOOK_PATH
from shared.api_keys import KeyMode, create_key, hash_key, revoke_key
from shared.documents import S3Location, StatusEntry, Transaction, from_document, to_document
from shared.status import TxStatus
from tests.conftest import issue_key
from tests.gateway.conftest import TENANT, ClientFactory, bearer

Client = AsyncTestClient[Litestar]
Call = Callable[[Client, dict[str, str]], Awaitable[Any]]

CSV = b"email,name\nada@example.com,Ada\n"
OTHER_TENANT = "globex"


class World:
    """TENANT's template and transaction, and every kind of credential."""

    def __init__(self, template_id: str, transaction_id: str, keys: dict[str, str | None]):
        self.template_id = template_id
        self.transaction_id = transaction_id
        self.keys = keys
        self.headers: dict[str, dict[str, str]] = {
            "none": {},
            "malformed": {"Authorization": "Basic dXNlcjpwYXNz"},
            "empty bearer": {"Authorization": "Bearer "},
            **{name: bearer(key) for name, key in keys.items() if key is not None},
        }


@pytest.fixture
async def world(deps: GatewayDeps, api_key: str, make_client: ClientFactory) -> World:
    async with make_client() as client:
        created = await client.post(
            "/api/v1/templates", json={"name": "w", "subject": "s", "text": "Hi {{ name }}"}
        )
    assert created.status_code == 201, created.text
    at = datetime(2030, 1, 1, tzinfo=UTC)
    tx = Transaction(
        id=uuid.uuid4().hex,
        tenant=TENANT,
        status=TxStatus.PROCESSING,
        template_id=created.json()["id"],
        source=S3Location(bucket="b", key="k"),
        status_history=[StatusEntry(status=TxStatus.ACCEPT, at=at)],
        created_at=at,
        updated_at=at,
    )
    await deps.store.transactions.insert_one(to_document(tx))
    revoked, stored = await create_key(deps.store, tenant=TENANT)
    await revoke_key(deps.store, stored.key_id)
    return World(
        created.json()["id"],
        tx.id,
        {
            "unknown key": "ep_live_" + "A" * 43,
            "revoked key": revoked,
            "other tenant": await issue_key(deps.store, OTHER_TENANT),
            "own key": api_key,
        },
    )


def _endpoints(world: World) -> dict[str, Call]:
    tx = f"/api/v1/transactions/{world.transaction_id}"

    def get(path: str) -> Call:
        return lambda c, h: c.get(path, headers=h)

    async def submit(c: Client, h: dict[str, str]) -> Any:
        return await c.post(
            "/api/v1/transactions",
            headers=h,
            files={"file": ("a.csv", CSV, "text/csv")},
            data={"template_id": world.template_id},
        )

    return {
        "create template": lambda c, h: c.post(
            "/api/v1/templates", headers=h, json={"name": "n", "subject": "s", "text": "t"}
        ),
        "get template": get(f"/api/v1/templates/{world.template_id}"),
        "submit": submit,
        "list transactions": get("/api/v1/transactions"),
        "get transaction": get(tx),
        "row errors": get(f"{tx}/errors"),
        "status": get(f"{tx}/status"),
        "list keys": get("/api/v1/admin/keys"),
        "create key": lambda c, h: c.post("/api/v1/admin/keys", headers=h, json={}),
        "revoke key": lambda c, h: c.post("/api/v1/admin/keys/whatever/revoke", headers=h),
    }


_OWN = {
    "create template": 201,
    "get template": 200,
    "submit": 202,
    "list transactions": 200,
    "get transaction": 200,
    "row errors": 200,
    "status": 200,
    # Neither key of the matrix is an admin key.
    "list keys": 403,
    "create key": 403,
    "revoke key": 403,
}
EXPECTED: dict[str, dict[str, int]] = {
    **{
        kind: dict.fromkeys(_OWN, 401)
        for kind in ("none", "malformed", "empty bearer", "unknown key", "revoked key")
    },
    "other tenant": {
        **_OWN,
        "get template": 404,
        # A template of another tenant is a bad field, exactly like a missing one.
        "submit": 400,
        "get transaction": 404,
        "row errors": 404,
        "status": 404,
    },
    "own key": _OWN,
}


@pytest.mark.parametrize("credential", list(EXPECTED))
async def test_every_endpoint_with_every_credential(
    make_client: ClientFactory, world: World, credential: str
) -> None:
    headers = world.headers[credential]
    answers: dict[str, int] = {}
    async with make_client(api_key=None) as client:
        for name, call in _endpoints(world).items():
            response = await call(client, headers)
            answers[name] = response.status_code
            if response.status_code == 401:
                assert response.json()["error"]["code"] == "UNAUTHORIZED"
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
            if response.status_code == 403:
                assert response.json()["error"]["code"] == "FORBIDDEN"
            for value in headers.values():
                secret = value.partition(" ")[2]
                assert not secret or secret not in response.text
    assert answers == EXPECTED[credential]


async def test_a_foreign_id_answers_like_a_missing_one(
    make_client: ClientFactory, world: World
) -> None:
    missing = uuid.uuid4().hex
    async with make_client(api_key=world.keys["other tenant"]) as client:
        for path in (
            "/api/v1/templates/{}",
            "/api/v1/transactions/{}",
            "/api/v1/transactions/{}/errors",
            "/api/v1/transactions/{}/status",
        ):
            for foreign in (world.template_id, world.transaction_id):
                seen = await client.get(path.format(foreign))
                absent = await client.get(path.format(missing))
                assert seen.status_code == absent.status_code == 404
                assert seen.headers.keys() == absent.headers.keys()
                assert seen.text == absent.text.replace(missing, foreign)
        listed = await client.get("/api/v1/transactions")
        assert listed.json() == {"items": [], "next_cursor": None}
        submitted = [
            await client.post(
                "/api/v1/transactions",
                files={"file": ("a.csv", CSV, "text/csv")},
                data={"template_id": template_id},
            )
            for template_id in (world.template_id, missing)
        ]
    assert submitted[0].status_code == submitted[1].status_code == 400
    assert submitted[0].text == submitted[1].text.replace(missing, world.template_id)


async def test_a_transaction_records_the_key_mode(
    make_client: ClientFactory, deps: GatewayDeps
) -> None:
    modes = {}
    for mode in KeyMode:
        key = await issue_key(deps.store, TENANT, mode=mode)
        async with make_client(api_key=key) as client:
            template = await client.post(
                "/api/v1/templates", json={"name": "n", "subject": "s", "text": "t"}
            )
            accepted = await client.post(
                "/api/v1/transactions",
                files={"file": ("a.csv", CSV, "text/csv")},
                data={"template_id": template.json()["id"]},
            )
        assert accepted.status_code == 202, accepted.text
        raw = await deps.store.transactions.find_one({"_id": accepted.json()["transaction_id"]})
        modes[mode] = from_document(raw, Transaction).mode
    assert modes == {KeyMode.LIVE: "live", KeyMode.TEST: "test"}


async def test_over_the_rate_is_429_with_retry_after(
    make_client: ClientFactory, deps: GatewayDeps, api_key: str
) -> None:
    other = await issue_key(deps.store, TENANT)
    async with make_client(api_rate_per_second=0.5, api_rate_burst=2) as client:
        first = [await client.get("/api/v1/transactions") for _ in range(2)]
        limited = await client.get("/api/v1/transactions")
        # Per key: another key of the same tenant has its own bucket.
        theirs = await client.get("/api/v1/transactions", headers=bearer(other))
        # The probes are not rate limited.
        health = [await client.get("/health/live") for _ in range(3)]
    assert [r.status_code for r in first] == [200, 200]
    assert limited.status_code == 429, limited.text
    error = limited.json()["error"]
    assert error["code"] == "RATE_LIMITED"
    assert 1 <= int(limited.headers["Retry-After"]) <= 2
    assert error["details"] == {"retry_after_seconds": int(limited.headers["Retry-After"])}
    assert theirs.status_code == 200
    assert {r.status_code for r in health} == {200}


async def test_keys_are_stored_only_as_hashes(deps: GatewayDeps) -> None:
    made = [
        await issue_key(deps.store, TENANT, mode=mode, admin=admin)
        for mode in KeyMode
        for admin in (False, True)
    ]
    stored = await deps.store.api_keys.find({}).to_list(None)
    assert sorted(doc["_id"] for doc in stored) == sorted(hash_key(key) for key in made)
    everything = repr(stored)
    for key in made:
        assert key.startswith(("ep_live_", "ep_test_"))
        assert len(key) >= len("ep_live_") + 32
        assert key not in everything
        # Nor the secret part on its own, nor any long piece of it.
        secret = key.split("_", 2)[2]
        assert secret[4:] not in everything


@pytest.fixture
def captured_logs() -> Iterator[LogCapture]:
    """Every log entry, with the request's bound context, as the real configuration has."""
    capture = LogCapture()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, capture])
    try:
        yield capture
    finally:
        structlog.reset_defaults()


async def test_the_key_never_reaches_the_logs(
    make_client: ClientFactory, api_key: str, captured_logs: LogCapture
) -> None:
    async with make_client() as client:
        created = await client.post(
            "/api/v1/templates", json={"name": "n", "subject": "s", "text": "t"}
        )
        submitted = await client.post(
            "/api/v1/transactions",
            files={"file": ("a.csv", CSV, "text/csv")},
            data={"template_id": created.json()["id"]},
        )
        wrong = api_key[:-4] + "abcd"
        refused = await client.get("/api/v1/transactions", headers=bearer(wrong))
    assert submitted.status_code == 202, submitted.text
    assert refused.status_code == 401
    assert wrong not in refused.text
    entries = captured_logs.entries
    accepted = [e for e in entries if e["event"] == "transaction accepted"]
    assert accepted
    assert accepted[0]["tenant"] == TENANT
    assert accepted[0]["api_key_id"]
    for secret in (api_key, api_key.split("_", 2)[2], wrong, hash_key(api_key)):
        assert secret not in repr(entries)


async def test_openapi_documents_the_scheme_and_the_answers(client: Client) -> None:
    spec = (await client.get("/schema/openapi.json")).json()
    assert spec["components"]["securitySchemes"]["BearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key: `Authorization: Bearer ep_live_...`.",
    }
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            # SNS cannot send a key: the webhook checks the message's signature instead.
            if path.startswith("/api/v1/") and path != WEBHOOK_PATH:
                assert operation["security"] == [{"BearerAuth": []}], (method, path)
                assert {"401", "429"} <= set(operation["responses"]), (method, path)
                assert "UNAUTHORIZED" in operation["responses"]["401"]["description"]
                assert "RATE_LIMITED" in operation["responses"]["429"]["description"]
            else:
                assert "security" not in operation, (method, path)
    admin = spec["paths"]["/api/v1/admin/keys"]["get"]
    assert "403" in admin["responses"]
