"""Prometheus metrics as a scraper sees them: the ops endpoint (shared/ops_server.py) served
in-process on the session's stack, every family of shared/metrics.py present, and each one
moving when the code that owns it runs; then a real service process with OPS_PORT set."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

import shared.metrics
from services.ingest.ingestion import IngestActor
from services.sender.sending import SenderActor
from services.tracker.events_actor import SesEventsActor
from shared.aws import open_s3
from shared.documents import DeadLetter, S3Location, StatusEntry, Transaction, to_document
from shared.events import SendBatch, SesEvents, TxAccepted
from shared.ops_server import serve_ops
from shared.records import keep_dead_letter
from shared.service import Runtime
from shared.settings import IngestSettings, load_settings
from shared.status import TxStatus
from shared.topology import CONSUMERS, Subjects
from shared.transitions import transition_tx
from stack.launcher import StackInfo
from stack.processes import free_port
from tests.conftest import settings_for
from tests.services.test_ingestion import submit
from tests.services.test_sending import open_test_sender, ready_transaction
from tests.tracker.tracker_builders import insert, sent_transaction, ses_event

if TYPE_CHECKING:
    from prometheus_client import Metric

# What the text exposition calls each metric's family (counters drop ``_total``).
FAMILIES = {getattr(shared.metrics, name).describe()[0].name for name in shared.metrics.__all__}


class Scrape:
    """One scrape of an ops endpoint: ``value(name, **labels)`` of a sample, 0 if absent."""

    def __init__(self, text: str) -> None:
        self.families: dict[str, Metric] = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples: list[Sample] = [s for f in self.families.values() for s in f.samples]

    def value(self, name: str, **labels: str) -> float:
        return next((s.value for s in self.samples if s.name == name and s.labels == labels), 0.0)


@pytest.fixture
async def ops(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """The ingest service's ops endpoint on a free port, and a client of it."""
    async with (
        serve_ops("ingest", runtime.broker, runtime.store, "127.0.0.1", 0) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client,
    ):
        yield client


async def scrape(client: httpx.AsyncClient) -> Scrape:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return Scrape(response.text)


def _transaction(status: TxStatus, entered: datetime) -> Transaction:
    return Transaction(
        id=uuid.uuid4().hex,
        tenant="t1",
        status=status,
        template_id="tpl",
        source=S3Location(bucket="b", key="k"),
        status_history=[StatusEntry(status=status, at=entered)],
        created_at=entered,
        updated_at=entered,
    )


async def test_every_family_is_exposed_and_the_probes_answer(ops: httpx.AsyncClient) -> None:
    found = await scrape(ops)
    assert FAMILIES - set(found.families) == set()
    # Known label values exist before anything happened: rate() sees the first increment.
    assert {s.labels["status"] for s in found.families["email_tx_transitions"].samples} >= set(
        TxStatus
    )
    live = await ops.get("/health/live")
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    ready = await ops.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"nats": True, "store": True}}


async def test_a_transition_is_counted_and_the_status_left_timed(
    runtime: Runtime, ops: httpx.AsyncClient
) -> None:
    tx = _transaction(TxStatus.PROCESSING, datetime.now(UTC) - timedelta(seconds=90))
    await runtime.store.transactions.insert_one(to_document(tx))
    before = await scrape(ops)

    assert await transition_tx(runtime.store, runtime.broker, tx, TxStatus.READY_TO_SEND)
    # A change that no longer applies counts nothing.
    assert not await transition_tx(runtime.store, runtime.broker, tx, TxStatus.READY_TO_SEND)

    after = await scrape(ops)
    entered = "email_tx_transitions_total"
    assert after.value(entered, status="READY_TO_SEND") == (
        before.value(entered, status="READY_TO_SEND") + 1
    )
    left = {"status": "PROCESSING"}
    count, total = "email_tx_status_seconds_count", "email_tx_status_seconds_sum"
    assert after.value(count, **left) == before.value(count, **left) + 1
    assert 90 <= after.value(total, **left) - before.value(total, **left) < 120
    bucket = "email_tx_status_seconds_bucket"
    assert after.value(bucket, **left, le="60.0") == before.value(bucket, **left, le="60.0")
    assert after.value(bucket, **left, le="120.0") == before.value(bucket, **left, le="120.0") + 1


async def test_a_dead_letter_is_counted_once_by_kind(
    runtime: Runtime, ops: httpx.AsyncClient
) -> None:
    letter = DeadLetter(
        id=f"job:{uuid.uuid4().hex}",
        service="ingest",
        subject=Subjects.TX_ACCEPTED,
        stream_seq=1,
        deliveries=10,
        payload="{}",
        error="boom",
        at=datetime.now(UTC),
    )
    before = (await scrape(ops)).value("email_dead_letters_total", kind="job")
    await keep_dead_letter(runtime.store, letter)
    await keep_dead_letter(runtime.store, letter)  # the same work again: kept once
    assert (await scrape(ops)).value("email_dead_letters_total", kind="job") == before + 1


async def test_consumer_lag_is_read_from_the_server_on_each_scrape(
    runtime: Runtime, ops: httpx.AsyncClient
) -> None:
    spec = CONSUMERS.INGEST
    await runtime.broker.js.purge_stream(spec.stream)
    try:
        before = await scrape(ops)
        assert before.value("email_jetstream_consumer_pending", consumer=spec.durable) == 0
        for _ in range(3):
            await runtime.broker.publish(
                Subjects.TX_ACCEPTED,
                TxAccepted(transaction_id=uuid.uuid4().hex),
                msg_id=uuid.uuid4().hex,
            )
        after = await scrape(ops)
        assert after.value("email_jetstream_consumer_pending", consumer=spec.durable) == 3
        assert after.value("email_jetstream_consumer_ack_pending", consumer=spec.durable) == 0
        # Only the scraped service's own consumers.
        assert "sender" not in {
            s.labels["consumer"] for s in after.families["email_jetstream_consumer_pending"].samples
        }
    finally:
        await runtime.broker.js.purge_stream(spec.stream)


async def test_ingest_counts_valid_and_invalid_rows(
    runtime: Runtime, ops: httpx.AsyncClient, stack_info: StackInfo, db_name: str
) -> None:
    settings = load_settings(IngestSettings, settings_for(stack_info, db_name))
    async with AsyncExitStack() as exits:
        s3 = await open_s3(exits, settings)
        actor = IngestActor(runtime.store, runtime.broker, s3, settings)
        csv = b"email,name\na@example.org,Ann\nnot-an-address,Bob\nc@example.org,Cy\n"
        tx = await submit(runtime, s3, stack_info.s3_bucket, csv)
        before = await scrape(ops)
        await actor.handle(TxAccepted(transaction_id=tx.id))
    after = await scrape(ops)
    rows = "email_rows_ingested_total"
    assert after.value(rows, result="valid") == before.value(rows, result="valid") + 2
    assert after.value(rows, result="invalid") == before.value(rows, result="invalid") + 1
    assert after.value("email_tx_transitions_total", status="PROCESSING") == (
        before.value("email_tx_transitions_total", status="PROCESSING") + 1
    )


async def test_the_sender_shows_its_rate_and_counts_failures_by_reason(
    runtime: Runtime, ops: httpx.AsyncClient, stack_info: StackInfo, db_name: str
) -> None:
    sender: SenderActor = await open_test_sender(runtime, stack_info, db_name)
    tx = await ready_transaction(
        runtime, {2: "a@example.org", 3: "b@example.org"}, html="<p>{{ name.no.such }}</p>"
    )
    before = await scrape(ops)
    await sender.handle(SendBatch(transaction_id=tx.id, batch=0))
    after = await scrape(ops)
    failed = "email_messages_failed_total"
    reason = "TEMPLATE_RENDER_ERROR"
    assert after.value(failed, reason=reason) == before.value(failed, reason=reason) + 2
    # The test sender's ceiling (SES_MAX_SEND_RATE=500) and the pace it keeps under it.
    assert after.value("email_ses_rate_ceiling_per_second") == 500
    assert 400 < after.value("email_ses_send_rate_per_second") < 500
    sender.pacer.throttled()
    assert (await scrape(ops)).value("email_ses_send_rate_per_second") < 400


async def test_the_tracker_counts_ses_rejects_as_failures(
    runtime: Runtime, ops: httpx.AsyncClient
) -> None:
    tx, messages = sent_transaction(2)
    await insert(runtime.store, tx, messages)
    before = await scrape(ops)
    await SesEventsActor(runtime.store, runtime.broker).handle(
        SesEvents(events=[ses_event("Reject", tx.id, 2), ses_event("Delivery", tx.id, 3)])
    )
    after = await scrape(ops)
    failed, reason = "email_messages_failed_total", "SES_REJECT"
    assert after.value(failed, reason=reason) == before.value(failed, reason=reason) + 1


def test_a_service_process_serves_metrics_and_probes(stack_info: StackInfo, db_name: str) -> None:
    port = free_port()
    env = {
        **os.environ,
        **settings_for(stack_info, db_name, LOG_FORMAT="json", OPS_PORT=str(port)),
    }
    child = subprocess.Popen(
        [sys.executable, "-m", "services.scheduler"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        ready = None
        while time.monotonic() < deadline:
            assert child.poll() is None, "the scheduler exited during start-up"
            try:
                ready = httpx.get(f"{base}/health/ready", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert ready is not None
        assert ready.status_code == 200
        found = Scrape(httpx.get(f"{base}/metrics", timeout=5).text)
        assert FAMILIES - set(found.families) == set()
        consumers = {
            s.labels["consumer"] for s in found.families["email_jetstream_consumer_pending"].samples
        }
        assert consumers == {"scheduler", "scheduler-due", "scheduler-control"}
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=15) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
