"""The simulator's ``SendEmail`` with Raw content, as SES v2 takes it (botocore sends the
MIME bytes base64-encoded in the JSON body), and the headers its send log keeps."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from email.message import EmailMessage
from email.policy import SMTP
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from stack.launcher import StackInfo

if TYPE_CHECKING:
    from types_aiobotocore_sesv2 import SESV2Client

pytestmark = pytest.mark.stack

UNSUBSCRIBE = "<https://mail.example.com/u/" + "t" * 120 + ">"


@pytest.fixture
async def ses(stack_info: StackInfo) -> AsyncIterator[SESV2Client]:
    async with get_session().create_client(
        "sesv2",
        endpoint_url=stack_info.ses_endpoint_url,
        region_name=stack_info.aws_region,
        aws_access_key_id=stack_info.aws_access_key_id,
        aws_secret_access_key=stack_info.aws_secret_access_key,
    ) as client:
        yield client


@pytest.fixture
async def sim(stack_info: StackInfo) -> AsyncIterator[httpx.AsyncClient]:
    assert stack_info.sim_url is not None
    async with httpx.AsyncClient(base_url=stack_info.sim_url, timeout=10) as client:
        yield client


def _mime(**headers: str) -> bytes:
    message = EmailMessage(policy=SMTP)
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content("Hallo Zoë\n")
    message.add_alternative("<p>Hallo Zoë</p>\n", subtype="html")
    return message.as_bytes()


async def _sent(sim: httpx.AsyncClient, tag: str) -> dict[str, Any]:
    response = await sim.get("/_sim/sends", params={"message_id": tag})
    [record] = response.json()
    assert isinstance(record, dict)
    return record


async def test_raw_content_with_unsubscribe_headers(
    ses: SESV2Client, sim: httpx.AsyncClient
) -> None:
    tag = uuid.uuid4().hex
    raw = _mime(
        From="News <news@example.com>",
        To="Zoë <success@simulator.amazonses.com>",
        Subject="Grüße aus dem Simulator",
        List_Unsubscribe=UNSUBSCRIBE,
        List_Unsubscribe_Post="List-Unsubscribe=One-Click",
    )
    answer = await ses.send_email(
        FromEmailAddress="news@example.com",
        Destination={"ToAddresses": ["success+raw@simulator.amazonses.com"]},
        Content={"Raw": {"Data": raw}},
        EmailTags=[{"Name": "message_id", "Value": tag}],
        ConfigurationSetName="test-set",
    )
    record = await _sent(sim, tag)
    assert record["ses_message_id"] == answer["MessageId"]
    # Destination wins over the message's To, as at SES.
    assert record["destination"] == ["success+raw@simulator.amazonses.com"]
    assert record["source"] == "news@example.com"
    assert record["subject"] == "Grüße aus dem Simulator"
    assert record["configuration_set"] == "test-set"
    assert record["headers"] == {
        "List-Unsubscribe": UNSUBSCRIBE,
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


async def test_raw_content_without_destination_goes_to_its_headers(
    ses: SESV2Client, sim: httpx.AsyncClient
) -> None:
    tag = uuid.uuid4().hex
    raw = _mime(
        From="News <news@example.com>",
        To="Zoë <success@simulator.amazonses.com>, ooto@simulator.amazonses.com",
        Cc="bounce@simulator.amazonses.com",
        Subject="No destination",
    )
    await ses.send_email(
        Content={"Raw": {"Data": raw}}, EmailTags=[{"Name": "message_id", "Value": tag}]
    )
    record = await _sent(sim, tag)
    assert record["destination"] == [
        "success@simulator.amazonses.com",
        "ooto@simulator.amazonses.com",
        "bounce@simulator.amazonses.com",
    ]
    assert record["source"] == "news@example.com"  # from the From header
    assert record["headers"] == {}


async def test_simple_content_records_no_headers(ses: SESV2Client, sim: httpx.AsyncClient) -> None:
    tag = uuid.uuid4().hex
    await ses.send_email(
        FromEmailAddress="news@example.com",
        Destination={"ToAddresses": ["success@simulator.amazonses.com"]},
        Content={"Simple": {"Subject": {"Data": "Hi"}, "Body": {"Text": {"Data": "x"}}}},
        EmailTags=[{"Name": "message_id", "Value": tag}],
    )
    record = await _sent(sim, tag)
    assert record["subject"] == "Hi"
    assert record["headers"] == {}


async def test_raw_content_without_sender_or_recipients_is_refused(ses: SESV2Client) -> None:
    no_from = _mime(To="success@simulator.amazonses.com", Subject="s")
    with pytest.raises(ClientError) as raised:
        await ses.send_email(Content={"Raw": {"Data": no_from}})
    assert raised.value.response["Error"]["Code"] == "BadRequestException"
    no_to = _mime(From="news@example.com", Subject="s")
    with pytest.raises(ClientError) as raised:
        await ses.send_email(Content={"Raw": {"Data": no_to}})
    assert raised.value.response["Error"]["Code"] == "BadRequestException"


async def test_raw_data_that_is_not_base64_is_a_bad_request(stack_info: StackInfo) -> None:
    body = {"Content": {"Raw": {"Data": "not base64 at all!"}}}
    assert stack_info.ses_endpoint_url is not None
    async with httpx.AsyncClient(base_url=stack_info.ses_endpoint_url) as client:
        response = await client.post("/v2/email/outbound-emails", json=body)
    assert response.status_code == 400
    assert response.headers["x-amzn-errortype"].startswith("BadRequestException")
