"""JetStream message schedules (ARCHITECTURE §3) on the embedded nats-server.

What was found (nats-server 2.15.1, nats-py 2.16): a JetStream publish to the schedule subject
with ``Nats-Schedule: @at <RFC3339>`` and ``Nats-Schedule-Target: <subject in the same
stream>`` is stored; at that time the server stores a copy of the payload on the target
subject, with the publisher's own headers plus ``Nats-Scheduler: <schedule subject>`` and
``Nats-Schedule-Next: purge`` (the ``Nats-Schedule*`` and ``Nats-Msg-Id`` headers are not
copied), and removes the schedule message. Purging the schedule subject first cancels it.
The fired message reaches JetStream consumers only, not core-NATS subscribers.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import nats
import pytest
from nats.js.api import StorageType, StreamConfig

from stack.launcher import Stack, StackInfo

pytestmark = pytest.mark.stack

STREAM = "SCHEDULES_TEST"
DUE = "email.tx.due"


@pytest.fixture(scope="module")
def info(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackInfo]:
    # Only NATS is needed: naming the other servers as given makes the launcher skip them.
    unused = {"MONGODB_URI": "mongodb://127.0.0.1:9/", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    with Stack(tmp_path_factory.mktemp("stack"), environ=unused) as started:
        assert set(started.pids) == {"nats"}
        yield started


@pytest.fixture
async def js(info: StackInfo) -> AsyncIterator[nats.js.JetStreamContext]:
    nc = await nats.connect(info.nats_url)
    js = nc.jetstream()
    await js.add_stream(
        StreamConfig(
            name=STREAM,
            subjects=["email.schedule.>", DUE],
            storage=StorageType.FILE,
            allow_msg_schedules=True,
        )
    )
    yield js
    await js.delete_stream(STREAM)
    await nc.close()


def _at(seconds: float) -> tuple[datetime, str]:
    when = datetime.now(UTC) + timedelta(seconds=seconds)
    return when, when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def test_a_schedule_fires_on_the_target_subject(js: nats.js.JetStreamContext) -> None:
    due = await js.pull_subscribe(DUE, durable=None, stream=STREAM)
    when, stamp = _at(2)
    await js.publish(
        "email.schedule.tx1.s1",
        b'{"transaction_id":"tx1","slot":"s1"}',
        headers={
            "Nats-Schedule": f"@at {stamp}",
            "Nats-Schedule-Target": DUE,
            "Nats-Msg-Id": "schedule:tx1:s1",
            "Transaction-Id": "tx1",
        },
    )
    [fired] = await due.fetch(1, timeout=5)
    arrived = datetime.now(UTC)
    await fired.ack()
    assert abs((arrived - when).total_seconds()) < 0.5
    assert fired.subject == DUE
    assert fired.data == b'{"transaction_id":"tx1","slot":"s1"}'
    assert fired.headers == {
        "Transaction-Id": "tx1",
        "Nats-Scheduler": "email.schedule.tx1.s1",
        "Nats-Schedule-Next": "purge",
    }
    # A one-shot schedule is gone once it fired.
    with pytest.raises(nats.js.errors.NotFoundError):
        await js.get_last_msg(STREAM, "email.schedule.tx1.s1")


async def test_purging_the_schedule_subject_cancels_it(js: nats.js.JetStreamContext) -> None:
    due = await js.pull_subscribe(DUE, durable=None, stream=STREAM)
    _, stamp = _at(1.5)
    headers = {"Nats-Schedule": f"@at {stamp}", "Nats-Schedule-Target": DUE}
    await js.publish("email.schedule.tx1.s1", b"cancelled", headers=headers)
    await js.publish("email.schedule.tx2.s1", b"kept", headers=headers)
    await js.purge_stream(STREAM, subject="email.schedule.tx1.s1")
    started = time.monotonic()
    fired = []
    while time.monotonic() - started < 3:
        try:
            fired += await due.fetch(10, timeout=0.5)
        except TimeoutError:  # nats.errors.TimeoutError, or the bare one fetch may raise
            continue
    assert [message.data for message in fired] == [b"kept"]
