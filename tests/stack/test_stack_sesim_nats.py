"""The SES simulator's direct sink: events straight onto ``email.ses.events``."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import msgspec
import nats
import pytest
from aiobotocore.session import get_session
from nats.aio.client import Client as NatsClient
from nats.js.api import StorageType, StreamConfig

from shared.events import SesEvents
from shared.topology import Subjects
from stack.launcher import Stack, StackInfo

pytestmark = pytest.mark.stack

STREAM = "SESIM_TEST"


@pytest.fixture(scope="module")
def info(
    tmp_path_factory: pytest.TempPathFactory,
    survivors: Callable[[Mapping[str, int]], list[str]],
) -> Iterator[StackInfo]:
    launcher = Stack(tmp_path_factory.mktemp("stack"), ses_sink="nats", environ={})
    yield launcher.start()
    pids = launcher.processes.pids()
    launcher.stop()
    assert survivors(pids) == []


@pytest.fixture(scope="module")
async def nc(info: StackInfo) -> AsyncIterator[NatsClient]:
    client = await nats.connect(info.nats_url)
    # Our own stream on the subject (not the platform's topology, which others are editing).
    await client.jetstream().add_stream(
        StreamConfig(name=STREAM, subjects=[Subjects.SES_EVENTS], storage=StorageType.FILE)
    )
    yield client
    await client.close()


async def test_events_arrive_on_nats_in_batches(info: StackInfo, nc: NatsClient) -> None:
    js = nc.jetstream()
    tag = uuid.uuid4().hex[:8]
    recipients = [
        "bounce@simulator.amazonses.com",
        "complaint@simulator.amazonses.com",
        "success+a@simulator.amazonses.com",
        "suppressionlist@simulator.amazonses.com",
        "someone@example.com",
    ]
    options: dict[str, Any] = {
        "endpoint_url": info.ses_endpoint_url,
        "region_name": info.aws_region,
        "aws_access_key_id": info.aws_access_key_id,
        "aws_secret_access_key": info.aws_secret_access_key,
    }
    async with get_session().create_client("sesv2", **options) as ses:
        await asyncio.gather(
            *(
                ses.send_email(
                    FromEmailAddress="news@example.com",
                    Destination={"ToAddresses": [to]},
                    Content={
                        "Simple": {"Subject": {"Data": "Hi"}, "Body": {"Text": {"Data": "x"}}}
                    },
                    EmailTags=[{"Name": "message_id", "Value": f"{tag}:{row}"}],
                )
                for row, to in enumerate(recipients)
            )
        )

    decoder = msgspec.json.Decoder(SesEvents)
    sub = await js.pull_subscribe(Subjects.SES_EVENTS, durable=None, stream=STREAM)
    events: list[dict[str, Any]] = []
    batch_sizes: list[int] = []
    msg_ids: set[str] = set()
    deadline = time.monotonic() + 10
    want = 2 * len(recipients) + 1  # Send + outcome each, and the Complaint after a Delivery
    while len(events) < want and time.monotonic() < deadline:
        try:
            messages = await sub.fetch(10, timeout=1)
        except TimeoutError:  # nats.errors.TimeoutError, or the bare one fetch may raise
            continue
        for message in messages:
            payload = decoder.decode(message.data)
            batch_sizes.append(len(payload.events))
            events.extend(payload.events)
            assert message.headers is not None
            msg_ids.add(message.headers["Nats-Msg-Id"])
            await message.ack()
    await sub.unsubscribe()

    by_row: dict[str, list[str]] = {}
    for event in events:
        [message_id] = event["mail"]["tags"]["message_id"]
        by_row.setdefault(message_id.split(":")[1], []).append(event["eventType"])
    assert by_row == {
        "0": ["Send", "Bounce"],
        "1": ["Send", "Delivery", "Complaint"],
        "2": ["Send", "Delivery"],
        "3": ["Send", "Bounce"],
        "4": ["Send", "Delivery"],
    }
    assert max(batch_sizes) > 1, "events sent together travel in one NATS message"
    assert len(msg_ids) == len(batch_sizes), "every batch has its own Nats-Msg-Id"
