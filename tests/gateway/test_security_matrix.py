"""The security matrix: every ``/api/v1`` route of the app x every kind of key.

The routes come from ``create_app(...).routes``, not from a list kept by hand: a route the
table below does not name fails ``test_the_table_names_every_route``, so a new endpoint
cannot be added without saying who may call it. Each (route, key kind) has one expected
status; path parameters are real ids of ``TENANT`` (a template, a transaction and its
callback, a suppressed address, a key), so another tenant's key shows whether it can see
them (404, exactly as a missing id: never 200, never 403).

Key kinds: none, a revoked key of ``TENANT``, a live key of another tenant, a test-mode key
of ``TENANT`` and an admin key of ``TENANT``. The SNS webhook (``/api/v1/webhooks/ses``) takes
no key (SNS signs its messages): whatever key is sent, it answers its own 4xx to a body that
is no SNS message, never 401.

Also: no key is ever logged, nor echoed in an answer.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec
import pytest
import structlog
from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.testing import AsyncTestClient
from structlog.testing import capture_logs

from services.gateway.app import API_PREFIX, create_app
from services.gateway.deps import GatewayDeps
from services.tracker.callbacks import deliveries_of
from shared.api_keys import KeyMode, create_key, revoke_key
from shared.documents import StatusEntry, to_document
from shared.settings import GatewaySettings
from shared.status import TxStatus
from tests.conftest import issue_key
from tests.gateway.conftest import TENANT, ClientFactory, bearer
from tests.tracker.tracker_builders import sent_transaction

Client = AsyncTestClient[Litestar]
Call = Callable[[Client, str, dict[str, str], "World"], Awaitable[Any]]

OTHER_TENANT: Final = "globex"
CSV: Final = b"email,name\nada@example.com,Ada\n"
KINDS: Final = ("none", "revoked", "other tenant", "test mode", "admin")


class World:
    """``TENANT``'s records whose ids fill the path parameters, and every kind of key."""

    def __init__(self, params: dict[str, str], keys: dict[str, str | None]) -> None:
        self.params = params
        self.keys = keys

    def headers(self, kind: str) -> dict[str, str]:
        key = self.keys[kind]
        return {} if key is None else bearer(key)


@pytest.fixture
async def world(deps: GatewayDeps, make_client: ClientFactory) -> World:
    store = deps.store
    async with make_client() as client:
        template = await client.post(
            "/api/v1/templates", json={"name": "w", "subject": "s", "text": "Hi {{ name }}"}
        )
        assert template.status_code == 201, template.text
        for email in ("kept@example.com", "gone@example.com"):
            put = await client.put(f"/api/v1/suppressions/{email}")
            assert put.status_code == 201, put.text
    # A finished transaction (its event stream ends) with its callbacks.
    tx, messages = sent_transaction(1, callback_url="https://example.com/hook")
    done_at = tx.updated_at + timedelta(minutes=1)
    tx = msgspec.structs.replace(
        tx,
        tenant=TENANT,
        template_id=template.json()["id"],
        status=TxStatus.COMPLETED,
        status_history=[*tx.status_history, StatusEntry(status=TxStatus.COMPLETED, at=done_at)],
        updated_at=done_at,
    )
    await store.transactions.insert_one(to_document(tx))
    await store.messages.insert_many(
        [to_document(msgspec.structs.replace(m, tenant=TENANT)) for m in messages]
    )
    deliveries = deliveries_of(tx, datetime.now(UTC).replace(microsecond=0))
    await store.callbacks.insert_many([to_document(d) for d in deliveries])
    _, spare = await create_key(store, tenant=TENANT)
    revoked, stored = await create_key(store, tenant=TENANT)
    await revoke_key(store, stored.key_id)
    return World(
        {
            "template_id": template.json()["id"],
            "transaction_id": tx.id,
            "callback_id": deliveries[0].id,
            "key_id": spare.key_id,
            # No dead letter is made: the admin's answer is the guard's, then a plain 404.
            "letter_id": uuid.uuid4().hex,
        },
        {
            "none": None,
            "revoked": revoked,
            "other tenant": await issue_key(store, OTHER_TENANT),
            "test mode": await issue_key(store, TENANT, mode=KeyMode.TEST),
            "admin": await issue_key(store, TENANT, admin=True),
        },
    )


def _plain(method: str, body: Any = None) -> Call:
    def call(client: Client, path: str, headers: dict[str, str], _: World) -> Awaitable[Any]:
        return client.request(method, path, headers=headers, json=body)

    return call


def _submit(client: Client, path: str, headers: dict[str, str], world: World) -> Awaitable[Any]:
    return client.post(
        path,
        headers=headers,
        files={"file": ("a.csv", CSV, "text/csv")},
        data={"template_id": world.params["template_id"]},
    )


def _row(
    *, own: int, other: int | None = None, admin: int | None = None, test: int | None = None
) -> dict[str, int]:
    """Expected statuses: ``own`` for a key of ``TENANT``; ``other`` for the other tenant's
    (``own`` unless told); ``admin``/``test`` where those differ from ``own``."""
    return {
        "none": 401,
        "revoked": 401,
        "other tenant": own if other is None else other,
        "test mode": own if test is None else test,
        "admin": own if admin is None else admin,
    }


def _admin_only(admin: int) -> dict[str, int]:
    return _row(own=403, admin=admin)


_TOMORROW = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
_TX = "/api/v1/transactions/{transaction_id:str}"
_SUP = "/api/v1/suppressions/{email:str}"
_DL = "/api/v1/admin/dead-letters/{letter_id:str}"

# (method, path as the app names it) -> (how to call it, expected status per key kind).
# In the order they are called: reads first, then what changes the records.
EXPECTED: dict[tuple[str, str], tuple[Call, dict[str, int]]] = {
    ("GET", "/api/v1/templates/{template_id:str}"): (_plain("GET"), _row(own=200, other=404)),
    ("GET", "/api/v1/transactions"): (_plain("GET"), _row(own=200)),
    ("GET", _TX): (_plain("GET"), _row(own=200, other=404)),
    ("GET", f"{_TX}/status"): (_plain("GET"), _row(own=200, other=404)),
    ("GET", f"{_TX}/errors"): (_plain("GET"), _row(own=200, other=404)),
    ("GET", f"{_TX}/errors.csv"): (_plain("GET"), _row(own=200, other=404)),
    ("GET", f"{_TX}/messages"): (_plain("GET"), _row(own=200, other=404)),
    ("GET", f"{_TX}/audit"): (_plain("GET"), _row(own=200, other=404)),
    ("GET", f"{_TX}/events"): (_plain("GET"), _row(own=200, other=404)),
    ("GET", f"{_TX}/callbacks"): (_plain("GET"), _row(own=200, other=404)),
    ("GET", "/api/v1/suppressions"): (_plain("GET"), _row(own=200)),
    ("GET", _SUP): (_plain("GET"), _row(own=200, other=404)),
    ("GET", "/api/v1/webhook-secret"): (_plain("GET"), _row(own=200)),
    ("GET", "/api/v1/admin/keys"): (_plain("GET"), _admin_only(200)),
    ("GET", "/api/v1/admin/dead-letters"): (_plain("GET"), _admin_only(200)),
    ("GET", _DL): (_plain("GET"), _admin_only(404)),
    ("GET", "/api/v1/admin/transactions"): (_plain("GET"), _admin_only(200)),
    ("GET", "/api/v1/alerts"): (_plain("GET"), _admin_only(200)),
    ("POST", "/api/v1/templates"): (
        _plain("POST", {"name": "n", "subject": "s", "text": "t"}),
        _row(own=201),
    ),
    # Another tenant's template is a bad field, exactly like a missing one.
    ("POST", "/api/v1/transactions"): (
        _submit,
        _row(own=202, other=400),
    ),
    ("POST", f"{_TX}/callbacks/{{callback_id:str}}/replay"): (
        _plain("POST"),
        _row(own=202, other=404),
    ),
    # The transaction is COMPLETED: its tenant's keys pass auth and the tenant check, then
    # meet its state (409); another tenant's never learns it.
    ("POST", f"{_TX}/cancel"): (_plain("POST"), _row(own=409, other=404)),
    ("POST", f"{_TX}/reschedule"): (
        _plain("POST", {"send_at": _TOMORROW}),
        _row(own=409, other=404),
    ),
    ("POST", f"{_TX}/retry-failed"): (_plain("POST"), _row(own=409, other=404)),
    ("PUT", _SUP): (_plain("PUT"), _row(own=200, other=201)),
    ("DELETE", _SUP): (_plain("DELETE"), _row(own=204, other=404)),
    ("POST", "/api/v1/webhook-secret/rotate"): (_plain("POST"), _row(own=200)),
    ("POST", "/api/v1/admin/keys"): (_plain("POST", {}), _admin_only(201)),
    ("POST", "/api/v1/admin/keys/{key_id:str}/revoke"): (_plain("POST"), _admin_only(200)),
    ("POST", f"{_DL}/retry"): (_plain("POST"), _admin_only(404)),
    ("POST", f"{_DL}/discard"): (_plain("POST"), _admin_only(404)),
    # No key needed nor looked at: SNS signs. Not an SNS message: its own 400.
    ("POST", "/api/v1/webhooks/ses"): (_plain("POST", {}), dict.fromkeys(KINDS, 400)),
}


def _routes(settings: GatewaySettings) -> set[tuple[str, str]]:
    """Every (method, path) the app serves under ``/api/v1`` (HEAD and OPTIONS aside)."""
    return {
        (method, route.path)
        for route in create_app(settings).routes
        if isinstance(route, HTTPRoute) and route.path.startswith(API_PREFIX)
        for method in route.methods
        if method not in ("HEAD", "OPTIONS")
    }


def _url(path: str, world: World, email: str) -> str:
    """The path with its parameters filled: ``{transaction_id:str}`` and the like."""
    params = {**world.params, "email": email}
    for name, value in params.items():
        path = path.replace(f"{{{name}:str}}", value)
    assert "{" not in path, path
    return path


def test_the_table_names_every_route(gateway_settings: GatewaySettings) -> None:
    served = _routes(gateway_settings)
    assert served, "no route found under /api/v1"
    assert served == set(EXPECTED), {
        "missing from the table": sorted(served - set(EXPECTED)),
        "not served": sorted(set(EXPECTED) - served),
    }
    for _, expected in EXPECTED.values():
        assert set(expected) == set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
async def test_every_route_with_every_kind_of_key(
    make_client: ClientFactory, world: World, kind: str
) -> None:
    headers = world.headers(kind)
    seen: dict[tuple[str, str], int] = {}
    async with make_client(api_key=None) as client:
        for (method, path), (call, _) in EXPECTED.items():
            # PUT on a suppressed address: 200 for its tenant, 201 (a list of its own, no
            # hint of the other's entry) for another tenant.
            email = "gone@example.com" if method == "DELETE" else "kept@example.com"
            response = await call(client, _url(path, world, email), headers, world)
            seen[method, path] = response.status_code
            key = world.keys[kind]
            assert key is None or key not in response.text, (method, path)
            if response.status_code == 401:
                assert response.json()["error"]["code"] == "UNAUTHORIZED"
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
            if response.status_code == 403:
                assert response.json()["error"]["code"] == "FORBIDDEN"
    expected = {route: statuses[kind] for route, (_, statuses) in EXPECTED.items()}
    assert seen == expected, {r: (seen[r], expected[r]) for r in seen if seen[r] != expected[r]}


async def test_no_key_is_logged_nor_echoed(make_client: ClientFactory, world: World) -> None:
    keys = [key for key in world.keys.values() if key is not None]
    tx = f"/api/v1/transactions/{world.params['transaction_id']}"
    # The request's bound context too (tenant, api_key_id), as the real configuration has.
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        async with make_client(api_key=None) as client:
            for kind in ("test mode", "admin", "other tenant", "revoked"):
                key = world.keys[kind]
                assert key is not None
                headers = bearer(key)
                email = f"{kind[:4]}@example.com"
                answers = [
                    await call(client, _url(path, world, email), headers, world)
                    for (method, path), (call, _) in EXPECTED.items()
                    # What logs: templates and transactions made, suppressions, secrets.
                    if method in ("POST", "PUT") and "admin" not in path
                ]
                answers.append(await client.get(f"{tx}/nope", headers=headers))
                for response in answers:
                    assert key not in response.text
                    assert key[12:] not in response.text
            # A wrong key, well formed or not, is not echoed in its 401 either.
            for wrong in ("ep_live_" + "Z" * 43, "not-a-key-" + "Q" * 30, "ep_" + "x" * 200):
                response = await client.get("/api/v1/transactions", headers=bearer(wrong))
                assert response.status_code == 401
                assert wrong not in response.text
                assert wrong not in str(response.headers)
                keys.append(wrong)
    events = {entry["event"] for entry in logs}
    assert {"template created", "transaction accepted", "suppression added"} <= events, events
    assert any(entry.get("api_key_id") for entry in logs), "the request's context was not seen"
    logged = repr(logs)
    for key in keys:
        assert key not in logged
        assert key[12:] not in logged


async def test_another_tenants_ids_answer_as_missing_ones(
    make_client: ClientFactory, world: World
) -> None:
    """Every route where another tenant's key gets 404: the very answer a missing id gets."""
    missing = World({name: uuid.uuid4().hex for name in world.params}, world.keys)
    headers = world.headers("other tenant")
    foreign_routes = [
        (route, call)
        for route, (call, statuses) in EXPECTED.items()
        if statuses["other tenant"] == 404
    ]
    assert len(foreign_routes) >= 10
    async with make_client(api_key=None) as client:
        for (method, path), call in foreign_routes:
            seen = await call(client, _url(path, world, "kept@example.com"), headers, world)
            absent = await call(client, _url(path, missing, "absent@example.com"), headers, missing)
            assert seen.status_code == absent.status_code == 404, (method, path)
            assert seen.headers.keys() == absent.headers.keys(), (method, path)
            masked = absent.text.replace("absent@example.com", "kept@example.com")
            for name, value in missing.params.items():
                masked = masked.replace(value, world.params[name])
            assert seen.text == masked, (method, path)
