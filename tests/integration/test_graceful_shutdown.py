"""SIGTERM to a busy sender (a real process, mid-campaign): its readiness turns false first,
it finishes the batches it holds within the grace period -- sends go on after readiness
went false, and it leaves no message claimed -- and exits 0; a replacement completes the
campaign with every message sent exactly once (the simulator's log, by message id).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pymongo import MongoClient

from cli.client import PlatformClient
from stack.platform import Platform
from tests.integration.own_platform import own_platform, sends_by_message

MESSAGES = 1_000
RATE = 100
BATCH = 50
GRACE = 10.0  # what the platform (and a container runtime) gives a process before SIGKILL
DB = "graceful_shutdown"

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("graceful")
    with own_platform(
        root,
        rate=RATE,
        service_env={
            "MONGODB_DB": DB,
            # Two batches of 50 in flight at most: a second's work at this rate.
            "BATCH_SIZE": str(BATCH),
            "CONCURRENCY": "2",
            "SEND_CHUNK_SIZE": "25",
            "SES_MAX_SEND_RATE": str(RATE),
        },
    ) as running:
        yield running


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


def test_sigterm_drains_a_busy_sender(platform: Platform, tmp_path: Path) -> None:
    assert platform.api_key is not None
    assert platform.info is not None
    assert platform.info.mongodb_uri is not None
    sim_url = platform.info.sim_url
    assert sim_url is not None
    ops_url = platform.ops_urls["sender"]
    with PlatformClient(platform.gateway_url, api_key=platform.api_key) as client:
        template = client.create_template(
            {"name": "drain", "subject": "Hi {{ name }}", "text": "Hello {{ name }}"}
        )
        tx_id = client.submit(recipients(tmp_path / "r.csv", MESSAGES), template["id"])[
            "transaction_id"
        ]
        # A fifth sent, and a batch part sent (a count between two multiples of the batch
        # size): the sender holds sends still to make. At a batch boundary both batches it
        # holds may be recording what they sent, with nothing left to send.
        while not _mid_batch(sum(sends_by_message(sim_url, tx_id).values())):
            time.sleep(0.02)
        assert ready(ops_url) is True

        # SIGTERM, as a container runtime or `Platform.stop` sends it.
        os.kill(platform.processes.pid("sender"), signal.SIGTERM)
        signalled = time.monotonic()
        answers = [ready(ops_url)]
        while answers[-1] is True and time.monotonic() - signalled < GRACE:
            answers.append(ready(ops_url))
        # Readiness went false while the process was still up and answering...
        assert answers[-1] is False, answers
        sent_when_unready = sum(sends_by_message(sim_url, tx_id).values())
        # ... and it exits on its own, in time, with 0.
        code = platform.processes.stop("sender", timeout=GRACE)
        drained_in = time.monotonic() - signalled
        assert code == 0
        assert drained_in < GRACE, drained_in
        sent_at_exit = sum(sends_by_message(sim_url, tx_id).values())
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

    assert record["status"] == "COMPLETED", record
    sends = sends_by_message(sim_url, tx_id)
    assert len(sends) == MESSAGES, f"lost: {MESSAGES - len(sends)}"
    assert [m for m, n in sends.items() if n > 1] == []
