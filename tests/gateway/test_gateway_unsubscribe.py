"""``/u/{token}`` (RFC 8058 one-click unsubscribe) and the ``marketing`` flag of templates."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from services.gateway.app import create_app
from services.gateway.deps import GatewayDeps
from shared.documents import Suppression, suppression_id, to_document
from shared.settings import GatewaySettings, SettingsError
from shared.unsubscribe import make_token, unsubscribe_url, verify_token
from tests.conftest import UNSUBSCRIBE_SECRET
from tests.gateway.conftest import TENANT, ClientFactory

Client = AsyncTestClient[Litestar]

EMAIL = "Zoë.Reader+news@Example.com"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def _path(tenant: str = TENANT, email: str = EMAIL, secret: str = UNSUBSCRIBE_SECRET) -> str:
    return f"/u/{make_token(secret, tenant, email)}"


async def _suppression(deps: GatewayDeps, tenant: str, email: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = await deps.store.suppressions.find_one(
        {"_id": suppression_id(tenant, email)}
    )
    return found


def _invalid_link(response: Any) -> None:
    assert response.status_code == 404, response.text
    error = response.json()["error"]
    assert error["code"] == "INVALID_UNSUBSCRIBE_LINK"
    assert error["details"] == {}


async def test_get_confirms_and_changes_nothing(
    make_client: ClientFactory, deps: GatewayDeps
) -> None:
    async with make_client(api_key=None) as client:  # no key: the link is the credential
        response = await client.get(_path())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "Zoë.Reader+news@Example.com" in page
    assert '<form method="post">' in page
    assert '<input type="hidden" name="List-Unsubscribe" value="One-Click">' in page
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    # A mail scanner that follows the link unsubscribes nobody.
    assert await _suppression(deps, TENANT, EMAIL) is None


async def test_the_page_escapes_the_address(make_client: ClientFactory) -> None:
    async with make_client(api_key=None) as client:
        response = await client.get(_path(email='"<script>"@example.com'))
    assert response.status_code == 200
    assert "<script>" not in response.text
    assert "&lt;script&gt;" in response.text


async def test_one_click_post_suppresses_the_address(
    make_client: ClientFactory, deps: GatewayDeps
) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    async with make_client(api_key=None) as client:
        # What a mail client sends (RFC 8058 §3.1): the header's value as a form body.
        response = await client.post(_path(), data=ONE_CLICK)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "location" not in response.headers  # RFC 8058: never a redirect
    stored = await _suppression(deps, TENANT, EMAIL)
    assert stored is not None
    suppression = msgspec.convert(stored, Suppression, strict=False)
    assert suppression.id == f"{TENANT}:zoë.reader+news@example.com"
    assert (suppression.tenant, suppression.email) == (TENANT, EMAIL)
    assert suppression.reason == "unsubscribed"
    assert suppression.created_at.replace(tzinfo=UTC) >= before


async def test_post_is_idempotent(make_client: ClientFactory, deps: GatewayDeps) -> None:
    async with make_client(api_key=None) as client:
        first = await client.post(_path(), data=ONE_CLICK)
        stored = await _suppression(deps, TENANT, EMAIL)
        again = await client.post(_path(), data=ONE_CLICK)
        # A body is not required: the token alone decides.
        bare = await client.post(_path())
    assert [r.status_code for r in (first, again, bare)] == [200, 200, 200]
    assert await _suppression(deps, TENANT, EMAIL) == stored
    assert await deps.store.suppressions.count_documents({}) == 1


async def test_an_earlier_suppression_keeps_its_reason(
    make_client: ClientFactory, deps: GatewayDeps
) -> None:
    bounce = Suppression(
        id=suppression_id(TENANT, EMAIL),
        tenant=TENANT,
        email=EMAIL.lower(),
        reason="bounce",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    await deps.store.suppressions.insert_one(to_document(bounce))
    async with make_client(api_key=None) as client:
        response = await client.post(_path(), data=ONE_CLICK)
    assert response.status_code == 200
    stored = await _suppression(deps, TENANT, EMAIL)
    assert stored is not None
    assert stored["reason"] == "bounce"


async def test_the_token_decides_the_tenant(make_client: ClientFactory, deps: GatewayDeps) -> None:
    async with make_client(api_key=None) as client:
        response = await client.post(_path(tenant="other-tenant"), data=ONE_CLICK)
    assert response.status_code == 200
    assert await _suppression(deps, "other-tenant", EMAIL) is not None
    assert await _suppression(deps, TENANT, EMAIL) is None


def _tampered() -> str:
    token = make_token(UNSUBSCRIBE_SECRET, TENANT, EMAIL)
    payload, signature = token.split(".")
    flipped = ("B" if signature[0] == "A" else "A") + signature[1:]
    return f"/u/{payload}.{flipped}"


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(_tampered(), id="tampered"),
        pytest.param(_path(secret="someone-elses-secret-of-32-characters-or-more"), id="secret"),
        pytest.param("/u/not-a-token", id="garbage"),
        pytest.param(_path()[:-1], id="cut-short"),
    ],
)
async def test_a_bad_link_is_404_and_changes_nothing(
    make_client: ClientFactory, deps: GatewayDeps, path: str
) -> None:
    async with make_client(api_key=None) as client:
        _invalid_link(await client.get(path))
        _invalid_link(await client.post(path, data=ONE_CLICK))
    assert await deps.store.suppressions.count_documents({}) == 0


def test_the_gateway_does_not_start_without_a_secret(
    gateway_settings: GatewaySettings,
) -> None:
    with pytest.raises(SettingsError, match="UNSUBSCRIBE_SECRET"):
        create_app(msgspec.structs.replace(gateway_settings, unsubscribe_secret=None))


async def test_the_routes_are_in_the_openapi_schema(client: Client) -> None:
    spec = (await client.get("/schema/openapi.json")).json()
    operations = spec["paths"]["/u/{token}"]
    assert set(operations) == {"get", "post"}
    for operation in operations.values():
        assert "security" not in operation
        assert "INVALID_UNSUBSCRIBE_LINK" in operation["responses"]["404"]["description"]
        assert "text/html" in operation["responses"]["200"]["content"]
    new_template = spec["components"]["schemas"]["NewTemplate"]["properties"]["marketing"]
    assert new_template["type"] == "boolean"
    assert "List-Unsubscribe" in new_template["description"]


# --- the marketing flag of templates -------------------------------------------------------


async def test_a_template_is_not_marketing_unless_marked(client: Client, deps: GatewayDeps) -> None:
    body = {"name": "receipt", "subject": "Your receipt", "text": "Thanks"}
    created = await client.post("/api/v1/templates", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["marketing"] is False
    template_id = created.json()["id"]
    assert (await client.get(f"/api/v1/templates/{template_id}")).json()["marketing"] is False
    stored = await deps.store.templates.find_one({"_id": template_id})
    assert stored is not None
    assert stored["marketing"] is False


async def test_a_marketing_template(client: Client, deps: GatewayDeps) -> None:
    body = {"name": "news", "subject": "News", "html": "<p>{{ x }}</p>", "marketing": True}
    created = await client.post("/api/v1/templates", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["marketing"] is True
    template_id = created.json()["id"]
    assert (await client.get(f"/api/v1/templates/{template_id}")).json()["marketing"] is True
    stored = await deps.store.templates.find_one({"_id": template_id})
    assert stored is not None
    assert stored["marketing"] is True


async def test_marketing_must_be_a_boolean(client: Client) -> None:
    body = {"name": "news", "subject": "News", "text": "t", "marketing": "yes"}
    response = await client.post("/api/v1/templates", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"


def test_links_point_at_the_gateway_of_the_test_stack(gateway_settings: GatewaySettings) -> None:
    """The fixtures give the gateway what the sender gets: the same secret, this gateway."""
    assert gateway_settings.unsubscribe_secret == UNSUBSCRIBE_SECRET
    assert gateway_settings.public_base_url is not None
    url = unsubscribe_url(gateway_settings.public_base_url, UNSUBSCRIBE_SECRET, TENANT, EMAIL)
    token = url.removeprefix(f"{gateway_settings.public_base_url}/u/")
    assert verify_token(UNSUBSCRIBE_SECRET, token) == (TENANT, EMAIL)
