"""The embedded stack, started for real, with the SES simulator on its SQS sink."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import httpx
import nats
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError
from pymongo import AsyncMongoClient, WriteConcern
from types_aiobotocore_sesv2 import SESV2Client

from stack.launcher import Stack, StackInfo, read_info

pytestmark = pytest.mark.stack

RATE = 20.0
NO_RETRIES = AioConfig(retries={"total_max_attempts": 1, "mode": "standard"})


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    survivors: Callable[[Mapping[str, int]], list[str]],
) -> Iterator[Stack]:
    launcher = Stack(
        tmp_path_factory.mktemp("stack"), gateway_port=18000, max_send_rate=RATE, environ={}
    )
    launcher.start()
    yield launcher
    pids = launcher.processes.pids()
    launcher.stop()
    assert len(pids) == 4
    assert survivors(pids) == []
    assert not launcher.info_path.exists()


@pytest.fixture(scope="module")
def info(stack: Stack) -> StackInfo:
    assert stack.info is not None
    return stack.info


def _aws(info: StackInfo) -> dict[str, Any]:
    return {
        "endpoint_url": info.aws_endpoint_url,
        "region_name": info.aws_region,
        "aws_access_key_id": info.aws_access_key_id,
        "aws_secret_access_key": info.aws_secret_access_key,
    }


@pytest.fixture(scope="module")
async def ses(info: StackInfo) -> AsyncIterator[SESV2Client]:
    async with get_session().create_client(
        "sesv2",
        endpoint_url=info.ses_endpoint_url,
        region_name=info.aws_region,
        aws_access_key_id=info.aws_access_key_id,
        aws_secret_access_key=info.aws_secret_access_key,
        config=NO_RETRIES,
    ) as client:
        yield client


@pytest.fixture
async def sim(info: StackInfo) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"{info.sim_url}/_sim") as client:
        yield client
        await client.delete("/faults")


async def _send(ses: SESV2Client, to: str, message_id: str) -> str:
    answer = await ses.send_email(
        FromEmailAddress="news@example.com",
        Destination={"ToAddresses": [to]},
        Content={
            "Simple": {
                "Subject": {"Data": f"Hello {message_id}"},
                "Body": {"Html": {"Data": "<p>Hi</p>"}, "Text": {"Data": "Hi"}},
            }
        },
        EmailTags=[{"Name": "message_id", "Value": message_id}],
        ConfigurationSetName="email-platform",
    )
    return answer["MessageId"]


def test_stack_json_and_env(stack: Stack, info: StackInfo) -> None:
    assert read_info(stack.info_path) == info
    env = info.env()
    assert env["NATS_URL"] == info.nats_url
    assert env["MONGODB_URI"].endswith("/?directConnection=true")
    assert env["SES_ENDPOINT_URL"] == info.sim_url
    assert env["AWS_ACCESS_KEY_ID"] == env["AWS_SECRET_ACCESS_KEY"] == "testing"
    assert env["GATEWAY_URL"] == "http://127.0.0.1:18000"
    assert set(env) == {
        "NATS_URL",
        "MONGODB_URI",
        "AWS_ENDPOINT_URL",
        "SES_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "S3_BUCKET",
        "SQS_QUEUE_URL",
        "GATEWAY_URL",
    }
    assert stack.startup_seconds["total"] < 15


async def test_nats_has_jetstream_that_syncs_always(stack: Stack, info: StackInfo) -> None:
    assert "sync_interval: always" in (stack.root / "nats.conf").read_text()
    nc = await nats.connect(info.nats_url)
    try:
        account = await nc.jetstream().account_info()
        assert account.limits is not None
    finally:
        await nc.close()
    assert info.nats_monitor_url is not None
    async with httpx.AsyncClient() as http:
        varz = (await http.get(f"{info.nats_monitor_url}/varz")).json()
    assert varz["jetstream"]["config"]["sync_always"] is True


async def test_store_takes_majority_journaled_writes(info: StackInfo) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(info.mongodb_uri)
    try:
        assert (await client.admin.command("ping"))["ok"] == 1
        things = client["stack_test"].get_collection(
            "things", write_concern=WriteConcern(w="majority", j=True)
        )
        result = await things.insert_one({"_id": "a", "n": 1})
        assert result.acknowledged
        assert await things.find_one({"_id": "a"}) == {"_id": "a", "n": 1}
    finally:
        await client.close()


async def test_bucket_and_queue_exist(info: StackInfo) -> None:
    session = get_session()
    async with session.create_client("s3", **_aws(info)) as s3:
        await s3.head_bucket(Bucket=info.s3_bucket)
    async with session.create_client("sqs", **_aws(info)) as sqs:
        found = await sqs.get_queue_url(QueueName="ses-events")
    assert found["QueueUrl"] == info.sqs_queue_url


async def _events_from_sqs(
    info: StackInfo, message_id: str, want: int, within: float = 10.0
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(SNS envelope, SES event) pairs for our message, in arrival order."""
    found: list[tuple[dict[str, Any], dict[str, Any]]] = []
    deadline = time.monotonic() + within
    async with get_session().create_client("sqs", **_aws(info)) as sqs:
        while len(found) < want and time.monotonic() < deadline:
            answer = await sqs.receive_message(
                QueueUrl=info.sqs_queue_url or "", MaxNumberOfMessages=10, WaitTimeSeconds=1
            )
            for message in answer.get("Messages", []):
                envelope = json.loads(message["Body"])
                event = json.loads(envelope["Message"])
                if event["mail"]["tags"].get("message_id") == [message_id]:
                    found.append((envelope, event))
                await sqs.delete_message(
                    QueueUrl=info.sqs_queue_url or "", ReceiptHandle=message["ReceiptHandle"]
                )
    return found


async def test_bounce_send_and_events_on_sqs(
    ses: SESV2Client, sim: httpx.AsyncClient, info: StackInfo
) -> None:
    message_id = f"tx-{uuid.uuid4().hex[:8]}:1"
    ses_id = await _send(ses, "bounce@simulator.amazonses.com", message_id)
    assert ses_id.endswith("-000000")

    events = await _events_from_sqs(info, message_id, want=2)
    kinds = sorted(event["eventType"] for _, event in events)
    assert kinds == ["Bounce", "Send"]
    for envelope, event in events:
        assert envelope["Type"] == "Notification"
        assert envelope["TopicArn"].startswith("arn:aws:sns:us-east-1:")
        assert event["mail"]["messageId"] == ses_id
        assert event["mail"]["destination"] == ["bounce@simulator.amazonses.com"]
    bounce = next(event["bounce"] for _, event in events if event["eventType"] == "Bounce")
    assert (bounce["bounceType"], bounce["bounceSubType"]) == ("Permanent", "General")

    logged = (await sim.get("/sends", params={"message_id": message_id})).json()
    assert [(r["ses_message_id"], r["destination"]) for r in logged] == [
        (ses_id, ["bounce@simulator.amazonses.com"])
    ]


async def test_get_account_reports_the_send_rate(ses: SESV2Client) -> None:
    account = await ses.get_account()
    assert account["SendQuota"]["MaxSendRate"] == RATE
    assert account["SendingEnabled"] is True


async def test_fault_windows(ses: SESV2Client, sim: httpx.AsyncClient) -> None:
    await sim.post("/faults", json={"kind": "error5xx", "seconds": 5})
    with pytest.raises(ClientError) as failed:
        await _send(ses, "success@simulator.amazonses.com", "fault:1")
    assert failed.value.response["Error"]["Code"] == "InternalFailure"
    assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500

    await sim.delete("/faults")
    await sim.post("/faults", json={"kind": "slow", "seconds": 5, "delay": 0.3})
    started = time.monotonic()
    await _send(ses, "success@simulator.amazonses.com", "fault:2")
    assert time.monotonic() - started >= 0.3

    bad = await sim.post("/faults", json={"kind": "meteor"})
    assert bad.status_code == 400


async def test_sends_beyond_the_rate_are_throttled(
    ses: SESV2Client, sim: httpx.AsyncClient
) -> None:
    await sim.post("/faults", json={"kind": "throttle", "seconds": 5})
    with pytest.raises(ClientError) as throttled:
        await _send(ses, "success@simulator.amazonses.com", "throttle:window")
    assert throttled.value.response["Error"] == {
        "Code": "TooManyRequestsException",
        "Message": "Maximum sending rate exceeded.",
    }
    await sim.delete("/faults")

    await asyncio.sleep(1.0)  # a full bucket
    results = await asyncio.gather(
        *(_send(ses, "success@simulator.amazonses.com", f"burst:{i}") for i in range(3 * 20)),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, ClientError)]
    accepted = [r for r in results if isinstance(r, str)]
    assert len(refused) + len(accepted) == len(results)
    assert {e.response["Error"]["Code"] for e in refused} == {"TooManyRequestsException"}
    assert {e.response["ResponseMetadata"]["HTTPStatusCode"] for e in refused} == {429}
    assert RATE <= len(accepted) <= 2 * RATE


async def test_send_email_errors_follow_the_rest_json_protocol(info: StackInfo) -> None:
    async with httpx.AsyncClient(base_url=info.sim_url or "") as http:
        malformed = await http.post("/v2/email/outbound-emails", content=b"{bad")
        invalid = await http.post(
            "/v2/email/outbound-emails", json={"Content": {}, "Destination": 5}
        )
        wrong_method = await http.get("/v2/email/outbound-emails")
    assert malformed.status_code == invalid.status_code == 400
    assert malformed.headers["x-amzn-ErrorType"] == "BadRequestException:"
    assert malformed.json() == {"message": "Malformed JSON body."}
    assert invalid.json()["message"].endswith("at `$.Destination`")
    assert invalid.headers["content-type"] == "application/json"
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "POST"


async def test_the_rate_can_be_changed_and_throttles_are_counted(
    ses: SESV2Client, sim: httpx.AsyncClient
) -> None:
    assert (await sim.post("/quota", json={"max_send_rate": 0})).status_code == 400
    assert (await sim.post("/quota", json={"max_send_rate": 5})).json() == {"max_send_rate": 5}
    try:
        assert (await ses.get_account())["SendQuota"]["MaxSendRate"] == 5
        before = (await sim.get("/health")).json()
        assert before["max_send_rate"] == 5
        results = await asyncio.gather(
            *(_send(ses, "success@simulator.amazonses.com", f"quota:{i}") for i in range(12)),
            return_exceptions=True,
        )
        refused = sum(isinstance(r, ClientError) for r in results)
        assert 12 - 2 * 5 <= refused <= 12 - 5
        after = (await sim.get("/health")).json()
        assert after["throttled"] - before["throttled"] == refused
    finally:
        await sim.post("/reset")
    health = (await sim.get("/health")).json()
    assert (health["max_send_rate"], health["throttled"], health["sends"]) == (RATE, 0, 0)
