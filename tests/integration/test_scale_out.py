"""Scale-out on one machine (``email-platform up --replicas sender=3,ingest=2``): a
5,000-message campaign with three sender and two ingest processes on a stack of the test's own.

It shows what replicas must not change and what they must:

- every message reaches SES exactly once (the simulator's log, by our message id), and every
  part of the campaign ends COMPLETED -- although one sender replica is SIGKILLed mid-run and
  not brought back: its claimed messages go to the others once their lease ends;
- the account's rate ceiling holds for all senders together: SES (the simulator's token
  bucket, a second's worth of burst) throttled nothing, and no ten-second window of accepted
  sends holds more than ten seconds' worth (within 2%: the simulator stamps a send when its
  event loop gets to it, so single seconds jitter around the senders' even spacing);
- the work is spread: every sender and every ingest process did some (each one's /metrics).

Ingest works a file at a time, so the campaign goes in as four files of 1,250 recipients.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.client import PlatformClient
from stack.platform import Platform
from tests.integration.own_platform import own_platform

MESSAGES = 5_000
PARTS = 4
RATE = 200  # the simulator's ceiling, and what the senders are told
SENDERS = 3
INGESTS = 2
KILLED = Platform.process_name("sender", SENDERS - 1)

# A sender killed inside a store transaction holds the campaign's counters until the store
# ends that transaction (60 s; README, "Running one service"): the run may take that longer.
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("scale-out")
    with own_platform(
        root,
        rate=RATE,
        replicas={"sender": SENDERS, "ingest": INGESTS},
        service_env={
            "MONGODB_DB": "scale_out",
            "BATCH_SIZE": "100",
            "SES_MAX_SEND_RATE": str(RATE),
            # The killed replica's claims are taken over within seconds, not minutes.
            "SEND_LEASE_SECONDS": "3",
            "SEND_RESOLVE_GRACE_SECONDS": "2",
            "SEND_CHUNK_SIZE": "50",
        },
    ) as running:
        yield running


def recipients(path: Path, start: int, n: int) -> Path:
    lines = [
        "email,name",
        *(f"success+{i}@simulator.amazonses.com,U{i}" for i in range(start, start + n)),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def sim_sends(sim_url: str) -> list[dict[str, Any]]:
    sends: list[dict[str, Any]] = httpx.get(f"{sim_url}/_sim/sends", timeout=30).json()
    return sends


def metric(ops_url: str, name: str, labels: str) -> float:
    """One sample of a process's /metrics, 0 when it has none yet."""
    text = httpx.get(f"{ops_url}/metrics", timeout=10).text
    found = re.search(rf"^{name}\{{{re.escape(labels)}\}} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def busiest_window(timestamps: list[datetime], seconds: float) -> int:
    """The most sends in any window of ``seconds`` (sliding, not aligned to the clock)."""
    times = sorted(t.timestamp() for t in timestamps)
    most, first = 0, 0
    for last, t in enumerate(times):
        while t - times[first] >= seconds:
            first += 1
        most = max(most, last - first + 1)
    return most


def test_replicas_share_the_work_and_the_rate_and_survive_losing_one(
    platform: Platform, tmp_path: Path
) -> None:
    assert platform.api_key is not None
    assert platform.info is not None
    sim_url = platform.info.sim_url
    assert sim_url is not None
    ops = platform.ops_urls
    senders = [Platform.process_name("sender", i) for i in range(SENDERS)]
    ingests = [Platform.process_name("ingest", i) for i in range(INGESTS)]
    size = MESSAGES // PARTS
    started = time.monotonic()
    with PlatformClient(platform.gateway_url, api_key=platform.api_key) as client:
        template = client.create_template(
            {"name": "scale", "subject": "Hi {{ name }}", "text": "Hello {{ name }}"}
        )
        tx_ids = [
            client.submit(recipients(tmp_path / f"r{p}.csv", p * size, size), template["id"])[
                "transaction_id"
            ]
            for p in range(PARTS)
        ]
        # Early in the run, every replica busy: the batches it held come back to the others
        # after the consumer's ack wait (30 s), so the earlier the kill, the shorter the test.
        # Not before the victim has sent something, though: which replica fetches the first
        # batches is up to JetStream, and a replica that never sent proves nothing about
        # losing a busy one. Its metrics die with it: read them just before.
        deadline = time.monotonic() + 60
        by_killed = 0.0
        while len(sim_sends(sim_url)) < MESSAGES // 10 or by_killed == 0:
            assert time.monotonic() < deadline, f"{KILLED} sent nothing in 60 s"
            time.sleep(0.2)
            by_killed = metric(ops[KILLED], "email_ses_sends_total", 'result="sent"')
        platform.kill(KILLED)
        killed_at = len(sim_sends(sim_url))
        records = [client.wait(tx_id, timeout=180) for tx_id in tx_ids]
    elapsed = time.monotonic() - started

    assert killed_at < MESSAGES
    assert [r["status"] for r in records] == ["COMPLETED"] * PARTS, records
    assert sum(r["counters"]["delivered"] for r in records) == MESSAGES

    # Exactly once: every message of the campaign reached SES, none twice.
    sends = [s for s in sim_sends(sim_url) if s["tags"].get("transaction_id") in tx_ids]
    per_message = Counter(s["tags"]["message_id"] for s in sends)
    assert len(per_message) == MESSAGES, f"lost: {MESSAGES - len(per_message)}"
    assert [m for m, n in per_message.items() if n > 1] == []

    # One ceiling for all senders together.
    health = httpx.get(f"{sim_url}/_sim/health", timeout=10).json()
    assert health["throttled"] == 0
    busiest = busiest_window([datetime.fromisoformat(s["timestamp"]) for s in sends], 10.0)
    assert busiest <= 10 * RATE * 1.02, busiest
    assert elapsed >= MESSAGES / RATE * 0.9, elapsed

    # Spread: every replica did some, the killed one before it died.
    sent_by = {
        name: metric(ops[name], "email_ses_sends_total", 'result="sent"')
        for name in senders
        if name != KILLED
    }
    sent_by[KILLED] = by_killed
    assert all(n > 0 for n in sent_by.values()), sent_by
    rows_by = {
        name: metric(ops[name], "email_rows_ingested_total", 'result="valid"') for name in ingests
    }
    assert all(n > 0 for n in rows_by.values()), rows_by
    assert sum(rows_by.values()) >= MESSAGES
