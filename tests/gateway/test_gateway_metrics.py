"""``GET /metrics`` on the gateway: Prometheus's exposition without an API key, not part
of the OpenAPI document."""

from __future__ import annotations

from litestar import Litestar
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway.conftest import ClientFactory


async def test_metrics_are_served_without_a_key(make_client: ClientFactory) -> None:
    client: AsyncTestClient[Litestar]
    async with make_client(api_key=None) as client:
        response = await client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=")
        families = {f.name for f in text_string_to_metric_families(response.text)}
        assert {"email_tx_transitions", "email_dead_letters"} <= families
        spec = (await client.get("/schema/openapi.json")).json()
        assert "/metrics" not in spec["paths"]
