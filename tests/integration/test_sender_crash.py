"""The sender killed with SIGKILL again and again in the middle of a campaign: every valid
message reaches SES exactly once (the simulator's log says so) and the counters are exact
(issue 4, exactly-once). Real processes on a stack of the test's own, whose simulator puts
SES's events straight onto NATS so that Send events can settle lost attempts.

``CHAOS_TRIALS`` (``make chaos``: 20) repeats the whole campaign; ``make test`` runs one.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymongo import MongoClient

from cli.client import PlatformClient
from stack.platform import Platform
from tests.integration.own_platform import own_platform, sends_by_message

TRIALS = int(os.environ.get("CHAOS_TRIALS", "1"))
MESSAGES = 2_000
KILLS = 5
RATE = 100  # the simulator's ceiling, and the sender's

pytestmark = pytest.mark.timeout(300 * TRIALS)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("sender-crash")
    with own_platform(
        root,
        rate=RATE,
        service_env={
            "MONGODB_DB": "sender_crash",
            "BATCH_SIZE": "100",
            "SES_MAX_SEND_RATE": str(RATE),
            # A lost attempt is decided within seconds here, not minutes.
            "SEND_LEASE_SECONDS": "3",
            "SEND_RESOLVE_GRACE_SECONDS": "2",
            "SEND_CHUNK_SIZE": "50",
        },
    ) as running:
        yield running


def recipients(path: Path, n: int) -> Path:
    lines = ["email,name", *(f"user{i}@example.org,U{i}" for i in range(n))]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("trial", range(TRIALS))
def test_killing_the_sender_repeatedly_sends_every_message_exactly_once(
    platform: Platform, tmp_path: Path, trial: int
) -> None:
    assert platform.api_key is not None
    assert platform.info is not None
    sim_url = platform.info.sim_url
    assert sim_url is not None
    rnd = random.Random(trial)
    with PlatformClient(platform.gateway_url, api_key=platform.api_key) as client:
        template = client.create_template(
            {"name": "crash", "subject": "Hi {{ name }}", "text": "Hello {{ name }}"}
        )
        accepted = client.submit(recipients(tmp_path / "r.csv", MESSAGES), template["id"])
        tx_id = accepted["transaction_id"]

        kills: list[int] = []
        while len(kills) < KILLS:
            time.sleep(rnd.uniform(1.0, 3.0))
            sent = sum(sends_by_message(sim_url, tx_id).values())
            if sent == 0:
                continue  # not sending yet: a kill now would prove nothing
            platform.kill("sender")
            kills.append(sent)
            platform.restart("sender")
        record = client.wait(tx_id, timeout=240)

    # The kills landed while the campaign was being sent.
    assert kills[0] < MESSAGES
    assert record["status"] == "COMPLETED", record
    sends = sends_by_message(sim_url, tx_id)
    assert len(sends) == MESSAGES, f"lost: {MESSAGES - len(sends)}"
    assert [m for m, n in sends.items() if n > 1] == []
    # The counters equal a recount of the messages.
    store = MongoClient(platform.info.mongodb_uri)
    try:
        recount = Counter(
            doc["status"].lower()
            for doc in store["sender_crash"]["messages"].find(
                {"transaction_id": tx_id}, {"status": 1}
            )
        )
    finally:
        store.close()
    counters = record["counters"]
    by_status = {k: v for k, v in counters.items() if k not in ("total", "invalid") and v}
    assert by_status == dict(recount)
    assert (counters["total"], recount) == (MESSAGES, Counter({"delivered": MESSAGES}))
