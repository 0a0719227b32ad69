"""SIGTERM to a busy sender (a real process, mid-campaign): its readiness turns false first,
it finishes the batches it holds within the grace period -- sends go on after readiness
went false, and it leaves no message claimed -- and exits 0; a replacement completes the
campaign with every message sent exactly once (the simulator's log, by message id).

And when the store is gone mid-campaign, SIGTERM still stops the sender, the tracker and
the gateway within their grace period (``SHUTDOWN_GRACE_SECONDS``) with 0: what they held is
let go, and once the store is back their replacements complete the campaign, still exactly
once.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import MongoClient

from cli.client import PlatformClient
from shared.service import CLOSING_SECONDS
from stack.launcher import Stack
from stack.platform import Platform
from tests.integration.own_platform import own_stack_and_platform, sends_by_message

MESSAGES = 1_000
RATE = 100
BATCH = 50
GRACE = 10.0  # what the platform (and a container runtime) gives a process before SIGKILL
# The services' own grace, under that: past it they let go of what they hold.
SHUTDOWN_GRACE = 5.0
DB = "graceful_shutdown"

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Platform]]:
    root = tmp_path_factory.mktemp("graceful")
    with own_stack_and_platform(
        root,
        rate=RATE,
        service_env={
            "MONGODB_DB": DB,
            # Two batches of 50 in flight at most: a second's work at this rate.
            "BATCH_SIZE": str(BATCH),
            "CONCURRENCY": "2",
            "SEND_CHUNK_SIZE": "25",
            "SES_MAX_SEND_RATE": str(RATE),
            "SHUTDOWN_GRACE_SECONDS": str(SHUTDOWN_GRACE),
            # What a sender let go of while claimed is settled within seconds, not minutes.
            "SEND_LEASE_SECONDS": "3",
            "SEND_RESOLVE_GRACE_SECONDS": "2",
        },
    ) as both:
        yield both


@pytest.fixture
def platform(running: tuple[Stack, Platform]) -> Platform:
    return running[1]


def recipients(path: Path, n: int) -> Path:
    lines = ["email,name", *(f"success+{i}@simulator.amazonses.com,U{i}" for i in range(n))]
    path.write_text("\n".join(lines) + "\n")
    return path


def ready(ops_url: str) -> bool | None:
    """The readiness probe's answer; None when nothing answers (the process is gone)."""
    try:
        return httpx.get(f"{ops_url}/health/ready", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return None


def _mid_batch(sent: int) -> bool:
    return sent >= MESSAGES // 5 and BATCH // 5 <= sent % BATCH <= BATCH - BATCH // 5


@contextmanager
def mid_campaign(platform: Platform, tmp_path: Path) -> Iterator[tuple[PlatformClient, str]]:
    """A campaign submitted, and waited on until a fifth is sent and a batch part sent (a
    count between two multiples of the batch size): the sender holds sends still to make.
    At a batch boundary both batches it holds may be recording what they sent, with
    nothing left to send."""
    assert platform.api_key is not None
    with PlatformClient(platform.gateway_url, api_key=platform.api_key) as client:
        template = client.create_template(
            {"name": "stop", "subject": "Hi {{ name }}", "text": "Hello {{ name }}"}
        )
        csv = recipients(tmp_path / "r.csv", MESSAGES)
        tx_id = client.submit(csv, template["id"])["transaction_id"]
        while not _mid_batch(sum(sends_by_message(sim_url(platform), tx_id).values())):
            time.sleep(0.02)
        yield client, tx_id


def sim_url(platform: Platform) -> str:
    assert platform.info is not None
    assert platform.info.sim_url is not None
    return platform.info.sim_url


def assert_completed_once_each(platform: Platform, record: dict[str, Any]) -> None:
    """The campaign COMPLETED with every message sent exactly once (the simulator's log)."""
    assert record["status"] == "COMPLETED", record
    sends = sends_by_message(sim_url(platform), str(record["transaction_id"]))
    assert len(sends) == MESSAGES, f"lost: {MESSAGES - len(sends)}"
    assert [m for m, n in sends.items() if n > 1] == []


def test_sigterm_drains_a_busy_sender(platform: Platform, tmp_path: Path) -> None:
    assert platform.info is not None
    assert platform.info.mongodb_uri is not None
    ops_url = platform.ops_urls["sender"]
    with mid_campaign(platform, tmp_path) as (client, tx_id):
        assert ready(ops_url) is True

        # SIGTERM, as a container runtime or `Platform.stop` sends it.
        os.kill(platform.processes.pid("sender"), signal.SIGTERM)
        signalled = time.monotonic()
        answers = [ready(ops_url)]
        while answers[-1] is True and time.monotonic() - signalled < GRACE:
            answers.append(ready(ops_url))
        # Readiness went false while the process was still up and answering...
        assert answers[-1] is False, answers
        sent_when_unready = sum(sends_by_message(sim_url(platform), tx_id).values())
        # ... and it exits on its own, in time, with 0.
        code = platform.processes.stop("sender", timeout=GRACE)
        drained_in = time.monotonic() - signalled
        assert code == 0
        assert drained_in < GRACE, drained_in
        sent_at_exit = sum(sends_by_message(sim_url(platform), tx_id).values())
        # It finished its in-flight batches: sends went on after readiness went false, and it
        # left no message claimed for a lease to expire.
        assert sent_at_exit > sent_when_unready
        assert sent_at_exit < MESSAGES
        store: MongoClient[dict[str, object]] = MongoClient(platform.info.mongodb_uri)
        try:
            claimed = store[DB]["messages"].count_documents(
                {"transaction_id": tx_id, "status": "SENDING"}
            )
        finally:
            store.close()
        assert claimed == 0

        # A replacement picks up what was left.
        platform.restart("sender")
        record = client.wait(tx_id, timeout=60)
    assert_completed_once_each(platform, record)


def test_a_store_that_is_gone_does_not_hold_a_stop_up(
    running: tuple[Stack, Platform], tmp_path: Path
) -> None:
    stack, platform = running
    # The two that hold store transactions mid-handling, and the gateway (uvicorn's stop).
    held = ["gateway", "sender", "tracker"]
    with mid_campaign(platform, tmp_path) as (client, tx_id):
        # The store goes away mid-campaign; the sender and the tracker are retrying their
        # store work (pymongo's own retries: a transaction's go on for 120 s) when told to
        # stop. Killed rather than frozen, so that no transaction of theirs outlives it:
        # one would hold the campaign's counters for the store's transaction lifetime.
        stack.kill("store")
        time.sleep(1.0)
        for name in held:
            os.kill(platform.processes.pid(name), signal.SIGTERM)
        signalled = time.monotonic()
        codes = {
            name: platform.processes.stop(name, timeout=SHUTDOWN_GRACE + CLOSING_SECONDS + 5)
            for name in held
        }
        stopped_in = time.monotonic() - signalled
        assert codes == dict.fromkeys(held, 0), codes
        assert stopped_in < SHUTDOWN_GRACE + CLOSING_SECONDS + 2, stopped_in
        assert sum(sends_by_message(sim_url(platform), tx_id).values()) < MESSAGES

        # What they let go of comes back to their replacements.
        stack.start_again("store")
        for name in held:
            platform.restart(name)
        deadline = time.monotonic() + 30
        while ready(platform.gateway_url) is not True:
            assert time.monotonic() < deadline, "the gateway did not come back"
            time.sleep(0.1)
        record = client.wait(tx_id, timeout=90)
    assert_completed_once_each(platform, record)
