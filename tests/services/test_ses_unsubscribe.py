"""``Ses.send`` with headers: Raw MIME content through botocore to the SES simulator, whose
send log shows the one-click unsubscribe headers that went out."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest

from services.sender.ses import Ses
from shared.aws import open_sesv2
from shared.settings import (
    SenderSettings,
    load_settings,
    require_public_base_url,
    require_unsubscribe_secret,
)
from shared.template import RenderedEmail
from shared.unsubscribe import UNSUBSCRIBE_PATH, list_unsubscribe_headers, verify_token
from stack.launcher import StackInfo
from tests.conftest import settings_for

MAIL = RenderedEmail(subject="Neuigkeiten für Zoë", html="<p>Hallo Zoë</p>", text="Hallo Zoë")
TO = "success+news@simulator.amazonses.com"


@pytest.fixture
def settings(stack_info: StackInfo, db_name: str) -> SenderSettings:
    return load_settings(SenderSettings, settings_for(stack_info, db_name))


@pytest.fixture
async def ses(settings: SenderSettings) -> AsyncIterator[Ses]:
    async with AsyncExitStack() as exits:
        client = await open_sesv2(exits, settings, settings.ses_endpoint_url)
        yield Ses(client, "News <news@example.org>", "test-set")


@pytest.fixture
async def sim(stack_info: StackInfo) -> AsyncIterator[httpx.AsyncClient]:
    assert stack_info.sim_url is not None
    async with httpx.AsyncClient(base_url=stack_info.sim_url, timeout=10) as client:
        yield client


async def _sent(sim: httpx.AsyncClient, tag: str) -> dict[str, Any]:
    [record] = (await sim.get("/_sim/sends", params={"message_id": tag})).json()
    assert isinstance(record, dict)
    return record


async def test_a_marketing_mail_carries_the_one_click_headers(
    ses: Ses, sim: httpx.AsyncClient, settings: SenderSettings
) -> None:
    base_url = require_public_base_url(settings)
    secret = require_unsubscribe_secret(settings)
    headers = list_unsubscribe_headers(base_url, secret, "acme", TO)
    tag = uuid.uuid4().hex
    ses_id = await ses.send(TO, MAIL, {"message_id": tag}, headers=headers)

    record = await _sent(sim, tag)
    assert record["ses_message_id"] == ses_id
    assert record["destination"] == [TO]
    assert record["source"] == "News <news@example.org>"
    assert record["subject"] == MAIL.subject
    assert record["configuration_set"] == "test-set"
    assert record["tags"] == {"message_id": tag}
    assert record["headers"] == headers
    # The link that went out points at the gateway and names this tenant and address.
    link = record["headers"]["List-Unsubscribe"].removeprefix("<").removesuffix(">")
    token = link.removeprefix(f"{base_url}{UNSUBSCRIBE_PATH}/")
    assert token != link
    assert verify_token(secret, token) == ("acme", TO)
    assert record["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


async def test_without_headers_the_mail_goes_as_simple_content(
    ses: Ses, sim: httpx.AsyncClient
) -> None:
    tag = uuid.uuid4().hex
    await ses.send(TO, MAIL, {"message_id": tag})
    record = await _sent(sim, tag)
    assert record["subject"] == MAIL.subject
    assert record["headers"] == {}
