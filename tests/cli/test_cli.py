"""``email-platform`` against the whole platform: send and follow with progress bars, status,
watch, errors, cancel, dead letters, keys, alerts; --json; the exit codes (cli/exits.py)."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import MongoClient

from shared.documents import AlertRecord, DeadLetter, to_document
from shared.events import Alert, AlertTransaction, TxAccepted, encode
from shared.status import AlertState
from stack.launcher import StackInfo
from stack.platform import LOCAL_TENANT
from stack.processes import free_port
from tests.cli.conftest import DB, Cli

pytestmark = pytest.mark.timeout(180)

BARS = ("ingest: rows read", "sending: messages sent", "outcomes: final")


def _json(text: str) -> Any:
    """The one JSON document of --json: the whole of stdout."""
    return json.loads(text)


@pytest.fixture(scope="package")
def completed(platform: Any, examples: Path) -> dict[str, Any]:
    """The demo campaign, sent with ``send --wait --json``: its final transaction."""
    result = Cli(platform)(
        "send",
        "--template",
        str(examples / "welcome.toml"),
        "--csv",
        str(examples / "recipients.csv"),
        "--wait",
        "--json",
    )
    assert result.exit_code == 0, result.output + result.stderr
    record: dict[str, Any] = _json(result.stdout)
    # The bars and the status lines went to stderr, drawn once (not a terminal).
    for bar in BARS:
        assert result.stderr.count(bar) == 1, result.stderr
    total = record["counters"]["total"]
    assert f"{total}/{total}" in result.stderr
    return record


@pytest.fixture
def no_rows_template(tmp_path: Path) -> Path:
    path = tmp_path / "hello.toml"
    path.write_text('name = "Hello"\nsubject = "Hi {{ name }}"\ntext = "Hello {{ name }}"\n')
    return path


def test_send_json_prints_the_final_transaction(completed: dict[str, Any]) -> None:
    assert completed["status"] == "COMPLETED"
    counters = completed["counters"]
    assert counters["total"] == 14
    assert counters["invalid"] == 5
    assert counters["delivered"] + counters["bounced"] + counters["complained"] == 14


def test_send_wait_shows_each_phase_and_the_final_counts(cli: Cli, examples: Path) -> None:
    result = cli(
        "send",
        "--template",
        str(examples / "welcome.toml"),
        "--csv",
        str(examples / "recipients.csv"),
        "--wait",
    )

    assert result.exit_code == 0, result.output + result.stderr
    out = result.stdout
    for status in ("ACCEPT", "PROCESSING", "READY_TO_SEND", "SENT", "COMPLETED"):
        assert f"  {status}\n" in out
    lines = {bar: line for line in out.splitlines() for bar in BARS if line.startswith(bar)}
    # Each bar once, full: the rows of the file (14 valid + 5 invalid), then the messages.
    assert set(lines) == set(BARS), out
    assert "19/19" in lines["ingest: rows read"]
    assert "14/14" in lines["sending: messages sent"]
    assert "14/14" in lines["outcomes: final"]
    assert "100%" in lines["outcomes: final"]
    # The rate of each phase, from the record's timestamps.
    assert all(re.search(r"\d/s", line) for line in lines.values()), out
    # The final counts, then the first row errors.
    assert "│ delivered" in out
    assert "row 8: INVALID_EMAIL" in out
    assert out.index("outcomes: final") < out.index("│ delivered") < out.index("row 8:")
    assert result.stderr == ""


def test_status_and_watch_of_a_finished_transaction(cli: Cli, completed: dict[str, Any]) -> None:
    tx_id = completed["transaction_id"]

    shown = cli("status", tx_id)
    assert shown.exit_code == 0, shown.output
    assert f"{tx_id}: COMPLETED 14/14 (100.0%)" in shown.stdout
    assert "│ delivered" in shown.stdout

    as_json = cli("status", tx_id, "--json")
    assert as_json.exit_code == 0
    assert _json(as_json.stdout)["counters"] == completed["counters"]

    watched = cli("watch", tx_id)
    assert watched.exit_code == 0, watched.output
    assert "  COMPLETED\n" in watched.stdout
    assert watched.stdout.count("outcomes: final") == 1
    assert "14/14" in watched.stdout
    assert "│ delivered" in watched.stdout

    watched_json = cli("watch", tx_id, "--json")
    assert watched_json.exit_code == 0
    assert _json(watched_json.stdout)["status"] == "COMPLETED"


def test_errors_writes_the_row_errors_csv(
    cli: Cli, completed: dict[str, Any], tmp_path: Path
) -> None:
    tx_id = completed["transaction_id"]
    target = tmp_path / "fix-me.csv"

    written = cli("errors", tx_id, "-o", str(target))

    assert written.exit_code == 0, written.output + written.stderr
    assert f"5 row errors of {tx_id} written to {target}" in written.stdout
    with target.open(newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    assert [r["error_code"] for r in rows][:2] == ["INVALID_EMAIL", "MISSING_EMAIL"]
    assert len(rows) == 5

    to_stdout = cli("errors", tx_id, "-o", "-")
    assert to_stdout.exit_code == 0
    assert list(csv.DictReader(io.StringIO(to_stdout.stdout))) == rows

    as_json = cli("errors", tx_id, "-o", str(tmp_path / "again.csv"), "--json")
    assert as_json.exit_code == 0
    items = _json(as_json.stdout)["items"]
    assert [e["details"]["row"] for e in items] == [8, 9, 10, 16, 17]
    assert (tmp_path / "again.csv").read_bytes() == target.read_bytes()

    # An unknown id: exit 1, and no file.
    missing = cli("errors", "no-such-id", "-o", str(tmp_path / "none.csv"))
    assert missing.exit_code == 1
    assert "TRANSACTION_NOT_FOUND" in missing.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.csv", "fix-me.csv"]


def test_a_failed_transaction_exits_1(cli: Cli, no_rows_template: Path, corpus: Path) -> None:
    sent = cli(
        "send",
        "--template",
        str(no_rows_template),
        "--csv",
        str(corpus / "all_rows_invalid.csv"),
        "--wait",
    )

    assert sent.exit_code == 1, sent.output + sent.stderr
    assert "  FAILED\n" in sent.stdout
    assert "NO_VALID_ROWS" in sent.stdout
    assert "row 2: INVALID_EMAIL" in sent.stdout
    tx_id = sent.stdout.split("Transaction ")[1].split()[0]

    shown = cli("status", tx_id, "--json")
    assert shown.exit_code == 1
    assert _json(shown.stdout)["status"] == "FAILED"


def test_a_cancelled_transaction_exits_1(cli: Cli, examples: Path) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    sent = cli(
        "send",
        "--template",
        str(examples / "welcome.toml"),
        "--csv",
        str(examples / "recipients.csv"),
        "--send-at",
        later,
        "--json",
    )
    assert sent.exit_code == 0, sent.output + sent.stderr
    accepted = _json(sent.stdout)
    assert accepted["status"] == "ACCEPT"
    tx_id = accepted["transaction_id"]

    cancelled = cli("cancel", tx_id, "--json")
    assert cancelled.exit_code == 0, cancelled.output + cancelled.stderr
    assert _json(cancelled.stdout)["cancel_requested_at"] is not None

    watched = cli("watch", tx_id, "--json", "--timeout", "60")
    assert watched.exit_code == 1, watched.output + watched.stderr
    assert _json(watched.stdout)["status"] == "CANCELLED"


def test_usage_errors_exit_2(
    cli: Cli, examples: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli.bare("watch").exit_code == 2
    assert cli.bare("send", "--csv", str(examples / "recipients.csv")).exit_code == 2
    missing_file = cli(
        "send", "--template", str(tmp_path / "nope.toml"), "--csv", str(examples / "recipients.csv")
    )
    assert missing_file.exit_code == 2

    # The API refused the input (400): usage too, and --json prints its error document.
    bad_time = cli(
        "send",
        "--template",
        str(examples / "welcome.toml"),
        "--csv",
        str(examples / "recipients.csv"),
        "--send-at",
        "tomorrow",
        "--json",
    )
    assert bad_time.exit_code == 2, bad_time.output + bad_time.stderr
    assert _json(bad_time.stdout)["error"]["code"] == "INVALID_SEND_AT"

    # No key anywhere: no --api-key, no EMAIL_PLATFORM_API_KEY, no var/stack.json here.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EMAIL_PLATFORM_API_KEY", raising=False)
    no_key = cli("status", "some-id", key=False)
    assert no_key.exit_code == 2
    assert "No API key" in no_key.stderr


def test_api_refusals_and_silence_exit_1(cli: Cli) -> None:
    missing = cli("status", "no-such-id")
    assert missing.exit_code == 1
    assert "TRANSACTION_NOT_FOUND" in missing.stderr

    missing_json = cli("status", "no-such-id", "--json")
    assert missing_json.exit_code == 1
    assert _json(missing_json.stdout)["error"]["code"] == "TRANSACTION_NOT_FOUND"

    unknown_key = cli.bare(
        "status", "no-such-id", "--gateway", cli.platform.gateway_url, "--api-key", "ep_live_x"
    )
    assert unknown_key.exit_code == 1
    assert "UNAUTHORIZED" in unknown_key.stderr

    nobody = cli.bare(
        "status", "x", "--gateway", f"http://127.0.0.1:{free_port()}", "--api-key", "ep_live_x"
    )
    assert nobody.exit_code == 1
    assert "did not answer" in nobody.stderr


def _letter(letter_id: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": letter_id,
        "service": "ingest",
        "subject": "email.tx.accepted",
        "stream_seq": 7,
        "deliveries": 5,
        "payload": "",
        "error": "boom",
        "at": datetime.now(UTC),
    }
    return to_document(DeadLetter(**(base | fields)))


def test_dead_letters_list_show_retry_discard(
    cli: Cli, stack_info: StackInfo, completed: dict[str, Any]
) -> None:
    tx_id = completed["transaction_id"]
    # A job letter whose retry is harmless (ingest finds the transaction ingested long ago)
    # and a callback letter.
    job = _letter(
        "cli-job-letter",
        payload=encode(TxAccepted(transaction_id=tx_id)).decode(),
        transaction_id=tx_id,
    )
    callback = _letter(
        "cli-callback-letter", kind="callback", service="tracker", subject="callbacks"
    )
    with MongoClient(stack_info.mongodb_uri, directConnection=True) as mongo:
        mongo[DB].dead_letters.insert_many([job, callback])

    listed = cli("dlq", "list", "--json")
    assert listed.exit_code == 0, listed.output + listed.stderr
    ids = {item["id"] for item in _json(listed.stdout)["items"]}
    assert {"cli-job-letter", "cli-callback-letter"} <= ids

    callbacks = cli("dlq", "list", "--kind", "callback", "--json")
    assert callbacks.exit_code == 0
    assert {item["kind"] for item in _json(callbacks.stdout)["items"]} == {"callback"}

    table = cli("dlq", "list")
    assert table.exit_code == 0
    assert "cli-job-letter" in table.stdout

    shown = cli("dlq", "show", "cli-job-letter", "--json")
    assert shown.exit_code == 0
    letter = _json(shown.stdout)
    assert (letter["kind"], letter["state"], letter["attempts"]) == ("ingest_job", "open", 5)
    assert tx_id in letter["payload"]
    assert cli("dlq", "show", "cli-job-letter").exit_code == 0

    retried = cli("dlq", "retry", "cli-job-letter", "--json")
    assert retried.exit_code == 0, retried.output + retried.stderr
    assert _json(retried.stdout)["state"] == "retried"
    # Once only: a closed letter is a 409, exit 1.
    again = cli("dlq", "retry", "cli-job-letter")
    assert again.exit_code == 1
    assert "DEAD_LETTER_CLOSED" in again.stderr

    discarded = cli("dlq", "discard", "cli-callback-letter")
    assert discarded.exit_code == 0, discarded.output + discarded.stderr
    assert "discarded" in discarded.stdout

    assert cli("dlq", "show", "no-such-letter").exit_code == 1


def test_keys_create_list_revoke(
    cli: Cli, stack_info: StackInfo, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The operator's commands go to the store, not the gateway.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MONGODB_URI", stack_info.mongodb_uri)
    monkeypatch.setenv("MONGODB_DB", DB)

    made = cli.bare("keys", "create", "--tenant", "cli-tenant", "--label", "ci", "--json")
    assert made.exit_code == 0, made.output + made.stderr
    created = _json(made.stdout)
    assert set(created) >= {"key", "id", "prefix", "tenant", "mode", "admin", "label"}
    assert (created["tenant"], created["mode"], created["label"]) == ("cli-tenant", "live", "ci")

    # The key works at the gateway.
    gateway = cli.platform.gateway_url
    headers = {"Authorization": f"Bearer {created['key']}"}
    assert httpx.get(f"{gateway}/api/v1/transactions", headers=headers).status_code == 200

    listed = cli.bare("keys", "list", "--tenant", "cli-tenant", "--json")
    assert listed.exit_code == 0
    items = _json(listed.stdout)["items"]
    assert [(k["id"], k["revoked_at"]) for k in items] == [(created["id"], None)]
    assert created["key"] not in listed.stdout

    revoked = cli.bare("keys", "revoke", created["id"], "--json")
    assert revoked.exit_code == 0, revoked.output + revoked.stderr
    assert _json(revoked.stdout)["revoked_at"] is not None
    # Straight in the store: the gateway refuses the key once it stops taking it on trust
    # (API_KEY_CACHE_SECONDS, 1 s by default).
    deadline = time.monotonic() + 1 + 2
    while (
        status := httpx.get(f"{gateway}/api/v1/transactions", headers=headers).status_code
    ) == 200:
        assert time.monotonic() < deadline, "the revoked key is still accepted"
        time.sleep(0.1)
    assert status == 401

    missing = cli.bare("keys", "revoke", "no-such-key")
    assert missing.exit_code == 1
    assert "No API key" in missing.stderr


def test_alerts(cli: Cli, stack_info: StackInfo, completed: dict[str, Any]) -> None:
    tx_id = completed["transaction_id"]
    now = datetime.now(UTC)
    # A rule no service evaluates, so nothing resolves it under the test.
    alert = Alert(
        rule="cli_check",
        state=AlertState.FIRING,
        since=now,
        at=now,
        summary="1 transaction [stuck]",
        transactions=[AlertTransaction(id=tx_id, tenant=LOCAL_TENANT)],
    )
    with MongoClient(stack_info.mongodb_uri, directConnection=True) as mongo:
        mongo[DB].alerts.insert_one(to_document(AlertRecord(id="cli_check", alert=alert)))

    shown = cli("alerts", "--json")
    assert shown.exit_code == 0, shown.output + shown.stderr
    found = {a["rule"]: a for a in _json(shown.stdout)["items"]}
    assert found["cli_check"]["state"] == "firing"
    assert found["cli_check"]["transactions"] == [tx_id]

    table = cli("alerts")
    assert table.exit_code == 0, table.output + table.stderr
    row = next(line for line in table.stdout.splitlines() if "cli_check" in line)
    assert "firing" in row
    assert "1 transaction [stuck]" in row
    assert tx_id in row
