"""The app built on clients the caller opened (``create_app(settings, deps)``).

httpx's ``ASGITransport`` runs the app on the test's own loop, where these clients live.
A broker whose connection is closed stands in for NATS being down.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from services.gateway.app import create_app
from services.gateway.deps import GatewayDeps
from shared.broker import connect_broker
from shared.settings import GatewaySettings
from tests.gateway.conftest import bearer


@asynccontextmanager
async def _client(
    settings: GatewaySettings, deps: GatewayDeps, key: str
) -> AsyncIterator[httpx.AsyncClient]:
    # httpx and Litestar spell the ASGI callable's types differently; it is the same protocol.
    transport = httpx.ASGITransport(app=create_app(settings, deps))  # type: ignore[arg-type]
    async with httpx.AsyncClient(
        transport=transport, base_url="http://gateway", headers=bearer(key)
    ) as client:
        yield client


async def test_app_on_open_clients(
    gateway_settings: GatewaySettings, deps: GatewayDeps, api_key: str
) -> None:
    async with _client(gateway_settings, deps, api_key) as client:
        assert (await client.get("/health/ready")).json()["checks"] == {"nats": True, "store": True}
        created = await client.post(
            "/api/v1/templates", json={"name": "n", "subject": "s", "text": "{{ a }}"}
        )
        assert created.status_code == 201
        assert created.json()["placeholders"] == ["a"]


async def test_nats_down(
    gateway_settings: GatewaySettings, deps: GatewayDeps, api_key: str
) -> None:
    broker = await connect_broker(gateway_settings.nats_url, "test-down")
    await broker.nc.close()
    down = GatewayDeps(broker=broker, store=deps.store, s3=deps.s3, settings=gateway_settings)
    async with _client(gateway_settings, down, api_key) as client:
        ready = await client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
        assert ready.json()["error"]["details"]["checks"] == {"nats": False, "store": True}

        template = await client.post(
            "/api/v1/templates", json={"name": "n", "subject": "s", "text": "t"}
        )
        response = await client.post(
            "/api/v1/transactions",
            files={"file": ("a.csv", b"email\na@example.com\n", "text/csv")},
            data={"template_id": template.json()["id"]},
        )
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "SERVICE_UNAVAILABLE"
    tx_id = error["details"]["transaction_id"]
    raw = await deps.store.transactions.find_one({"_id": tx_id})
    assert raw is not None
    assert raw["status"] == "ACCEPT"
