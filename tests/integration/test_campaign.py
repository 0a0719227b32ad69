"""One campaign end to end: all five services as processes on the real embedded stack."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from email_validator import EmailNotValidError, validate_email

from cli.client import PlatformClient
from stack.launcher import StackInfo
from stack.platform import Platform
from stack.processes import free_port

pytestmark = pytest.mark.timeout(180)


class Receiver:
    """A callback receiver on loopback that records every POST body in order."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def platform(stack_info: StackInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("platform")
    with Platform(
        root,
        gateway_port=free_port(),
        running_stack=stack_info,
        service_env={
            "MONGODB_DB": "e2e",
            "SQS_WAIT_SECONDS": "1",
            # The callback receiver below is on loopback (shared/safe_http.py).
            "CALLBACK_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",
        },
    ) as running:
        yield running


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def client(platform: Platform) -> Iterator[PlatformClient]:
    assert platform.api_key is not None
    with PlatformClient(platform.gateway_url, api_key=platform.api_key) as c:
        yield c


def expected_outcomes(path: Path) -> Counter[str]:
    """What the demo CSV implies, by the SES mailbox simulator's rules."""
    counts: Counter[str] = Counter()
    with path.open(newline="", encoding="utf-8") as f:
        rows = [row for row in csv.reader(f) if row]
    header = [name.strip().lower().replace(" ", "_") for name in rows[0]]
    for row in rows[1:]:
        if len(row) != len(header) or not all(value.strip() for value in row):
            counts["invalid"] += 1
            continue
        try:
            email = validate_email(row[0], check_deliverability=False).normalized
        except EmailNotValidError:
            counts["invalid"] += 1
            continue
        local = email.split("@")[0].split("+")[0]
        counts[
            {"bounce": "bounced", "suppressionlist": "bounced", "complaint": "complained"}.get(
                local, "delivered"
            )
        ] += 1
    return counts


def template(client: PlatformClient, examples: Path) -> str:
    import tomllib

    created = client.create_template(tomllib.loads((examples / "welcome.toml").read_text()))
    assert created["placeholders"] == ["city", "first_name"]
    return str(created["id"])


def test_demo_campaign_completes(
    client: PlatformClient, receiver: Receiver, examples: Path
) -> None:
    csv_path = examples / "recipients.csv"
    accepted = client.submit(csv_path, template(client, examples), callback_url=receiver.url)
    assert accepted["status"] == "ACCEPT"
    tx_id = accepted["transaction_id"]

    record = client.wait(tx_id, timeout=120)

    assert record["status"] == "COMPLETED", record
    expected = expected_outcomes(csv_path)
    counters = record["counters"]
    assert {k: counters[k] for k in ("delivered", "bounced", "complained", "invalid")} == {
        k: expected[k] for k in ("delivered", "bounced", "complained", "invalid")
    }
    assert counters["total"] == expected["delivered"] + expected["bounced"] + expected["complained"]
    # Every message is counted once, in the status it ended in.
    in_flight = ("scheduled", "ready_to_send", "sending", "sent")
    assert {key: counters[key] for key in in_flight} == dict.fromkeys(in_flight, 0)
    finals = ("delivered", "bounced", "complained", "failed", "suppressed", "expired", "cancelled")
    assert sum(counters[key] for key in finals) == counters["total"]

    statuses = [entry["status"] for entry in record["status_history"]]
    assert statuses == ["ACCEPT", "PROCESSING", "READY_TO_SEND", "SENT", "COMPLETED"]
    stamps = [datetime.fromisoformat(e["timestamp"]) for e in record["status_history"]]
    assert stamps == sorted(stamps)

    status = client.status(tx_id)
    assert status["progress"] == {
        "total_messages": counters["total"],
        "processed_messages": counters["total"],
        "percentage": 100.0,
    }
    assert record["stats"] is not None

    errors = client.errors(tx_id)["items"]
    assert len(errors) == expected["invalid"]
    assert {e["code"] for e in errors} >= {"INVALID_EMAIL", "MISSING_EMAIL"}
    first = errors[0]
    assert set(first) == {"code", "message", "details", "recovery_action"}
    assert set(first["details"]) >= {"row", "field", "value", "expected_format"}
    # Spreadsheet rows: the quoted line break in row 12 does not shift the rows after it.
    assert [e["details"]["row"] for e in errors] == [8, 9, 10, 16, 17]

    # The last callback may still be on its way when the final status is read.
    deadline = datetime.now(UTC) + timedelta(seconds=15)
    while len(receiver.bodies) < 4 and datetime.now(UTC) < deadline:
        threading.Event().wait(0.1)
    assert [(b["old_status"], b["new_status"]) for b in receiver.bodies] == [
        ("ACCEPT", "PROCESSING"),
        ("PROCESSING", "READY_TO_SEND"),
        ("READY_TO_SEND", "SENT"),
        ("SENT", "COMPLETED"),
    ]
    assert all(
        b["transaction_id"] == tx_id and b["event_type"] == "status_change" for b in receiver.bodies
    )


def test_scheduled_campaign_waits_for_send_at(
    client: PlatformClient, stack_info: StackInfo, examples: Path
) -> None:
    send_at = datetime.now(UTC) + timedelta(seconds=5)
    accepted = client.submit(
        examples / "recipients.csv", template(client, examples), send_at=send_at.isoformat()
    )
    tx_id = accepted["transaction_id"]

    record = client.wait(tx_id, timeout=120)

    assert record["status"] == "COMPLETED", record
    statuses = [entry["status"] for entry in record["status_history"]]
    assert statuses == ["ACCEPT", "PROCESSING", "SCHEDULED", "READY_TO_SEND", "SENT", "COMPLETED"]
    assert stack_info.sim_url is not None
    sends = [
        s
        for s in httpx.get(f"{stack_info.sim_url}/_sim/sends", timeout=10).json()
        if s.get("tags", {}).get("transaction_id") == tx_id
    ]
    # The bounces and complaints of an earlier campaign to the same file are suppressed now.
    counters = record["counters"]
    assert len(sends) == counters["total"] - counters.get("suppressed", 0)
    assert all(datetime.fromisoformat(s["timestamp"]) >= send_at for s in sends)


def test_the_platform_made_a_local_admin_key(platform: Platform) -> None:
    assert platform.api_key is not None
    assert platform.api_key.startswith("ep_live_")
    listed = httpx.get(
        f"{platform.gateway_url}/api/v1/admin/keys",
        headers={"Authorization": f"Bearer {platform.api_key}"},
        timeout=10,
    )
    assert listed.status_code == 200, listed.text
    active = [k for k in listed.json()["items"] if k["revoked_at"] is None]
    assert [(k["tenant"], k["mode"], k["admin"]) for k in active] == [("local", "live", True)]
    assert platform.api_key.startswith(active[0]["prefix"])


def test_the_cli_sends_and_follows_a_campaign(platform: Platform, examples: Path) -> None:
    cli = Path(sys.executable).parent / "email-platform"
    assert platform.api_key is not None
    sent = subprocess.run(
        [
            str(cli),
            "send",
            "--template",
            str(examples / "welcome.toml"),
            "--csv",
            str(examples / "recipients.csv"),
            "--wait",
            "--gateway",
            platform.gateway_url,
            "--api-key",
            platform.api_key,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert sent.returncode == 0, sent.stdout + sent.stderr
    for status in ("ACCEPT", "PROCESSING", "READY_TO_SEND", "SENT", "COMPLETED"):
        assert status in sent.stdout
    assert "row 8: INVALID_EMAIL" in sent.stdout
    tx_id = sent.stdout.split("Transaction ")[1].split()[0]

    # The key from the environment this time.
    shown = subprocess.run(
        [str(cli), "status", tx_id, "--gateway", platform.gateway_url],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "EMAIL_PLATFORM_API_KEY": platform.api_key},
    )
    assert shown.returncode == 0, shown.stderr
    assert f"{tx_id}: COMPLETED 14/14 (100.0%)" in shown.stdout

    missing = subprocess.run(
        [
            str(cli),
            "status",
            "no-such-id",
            "--gateway",
            platform.gateway_url,
            "--api-key",
            platform.api_key,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert missing.returncode == 1
    assert "TRANSACTION_NOT_FOUND" in missing.stderr

    unknown = subprocess.run(
        [str(cli), "status", tx_id, "--gateway", platform.gateway_url, "--api-key", "ep_live_x"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert unknown.returncode == 1
    assert "UNAUTHORIZED" in unknown.stderr


def test_every_service_process_serves_metrics_and_probes(platform: Platform) -> None:
    """After the campaigns above: each process's ops endpoint answers, and the counters
    moved in the process that owns them."""
    urls = platform.ops_urls
    assert set(urls) == {"gateway", "ingest", "scheduler", "sender", "tracker"}
    scraped = {}
    for name, url in urls.items():
        assert httpx.get(f"{url}/health/ready", timeout=5).status_code == 200, name
        scraped[name] = httpx.get(f"{url}/metrics", timeout=5).text
    assert 'email_tx_transitions_total{status="PROCESSING"} 0.0' not in scraped["ingest"]
    assert 'email_rows_ingested_total{result="valid"} 0.0' not in scraped["ingest"]
    assert 'email_tx_transitions_total{status="COMPLETED"} 0.0' not in scraped["tracker"]
    assert 'email_ses_sends_total{result="sent"}' in scraped["sender"]
    assert 'email_jetstream_consumer_pending{consumer="tracker"}' in scraped["tracker"]
