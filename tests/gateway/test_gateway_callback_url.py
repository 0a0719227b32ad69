"""A callback URL that names a non-public address is refused when the submission comes in
(CALLBACK_URL_NOT_ALLOWED), in any spelling of the address and on both kinds of submission,
unless ``callback_allowed_networks`` allows it; names wait for the tracker's check."""

from __future__ import annotations

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from services.gateway.deps import GatewayDeps
from shared.settings import GatewaySettings
from tests.gateway.conftest import ClientFactory
from tests.gateway.test_gateway_api import _error, _submit, _template
from tests.gateway.test_gateway_submit_json import _put, _submit_json

Client = AsyncTestClient[Litestar]

METADATA_ENDPOINT = "http://169.254.169.254/"


async def test_the_metadata_endpoint_is_not_a_callback_url(client: Client) -> None:
    template_id = await _template(client)
    error = _error(
        await _submit(client, template_id, callback_url=METADATA_ENDPOINT),
        400,
        "CALLBACK_URL_NOT_ALLOWED",
    )
    assert error["details"] == {"field": "callback_url", "value": METADATA_ENDPOINT}
    assert "169.254.169.254" in error["message"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://2852039166/",  # 169.254.169.254 in decimal
        "http://0251.0376.0251.0376/",  # in octal
        "http://0xa9fea9fe/",  # in hex
        "http://127.1/",
        "http://10.0.0.1/",
        "http://100.64.0.1/",
        "https://[::1]/hook",
        "https://[::ffff:169.254.169.254]/",
        "https://[fd00::1]/",
    ],
)
async def test_every_spelling_of_a_refused_address_is_refused(
    client: Client, deps: GatewayDeps, gateway_settings: GatewaySettings, url: str
) -> None:
    template_id = await _template(client)
    _error(await _submit(client, template_id, callback_url=url), 400, "CALLBACK_URL_NOT_ALLOWED")
    source = {"s3_uri": await _put(deps, gateway_settings)}
    body = {"template_id": template_id, "source": source, "callback_url": url}
    _error(await _submit_json(client, body), 400, "CALLBACK_URL_NOT_ALLOWED")


async def test_user_information_is_an_invalid_callback_url(client: Client) -> None:
    template_id = await _template(client)
    url = "https://hooks.example.com@127.0.0.1/hook"
    _error(await _submit(client, template_id, callback_url=url), 400, "INVALID_CALLBACK_URL")


async def test_a_name_is_left_to_the_tracker(client: Client) -> None:
    template_id = await _template(client)
    response = await _submit(client, template_id, callback_url="http://localhost:9/hook")
    assert response.status_code == 202, response.text


async def test_the_allow_list_lets_an_address_through(make_client: ClientFactory) -> None:
    async with make_client(callback_allowed_networks="127.0.0.0/8,::1/128") as client:
        template_id = await _template(client)
        for url in ("http://127.0.0.1:9/hook", "http://[::1]:9/hook"):
            response = await _submit(client, template_id, callback_url=url)
            assert response.status_code == 202, response.text
        _error(
            await _submit(client, template_id, callback_url=METADATA_ENDPOINT),
            400,
            "CALLBACK_URL_NOT_ALLOWED",
        )
