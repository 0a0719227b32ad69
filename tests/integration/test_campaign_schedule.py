"""Scheduled campaigns end to end: all five services as processes on the real embedded stack.

Per-row send times (an offset, a local time with its zone, none) reach SES no earlier than
each row's time; a scheduled campaign cancelled through the API (and the CLI client) ends
CANCELLED with nothing sent.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from cli.client import PlatformClient
from shared.schedule import slot_of
from stack.launcher import StackInfo
from stack.platform import Platform
from stack.processes import free_port
from tests.integration.test_campaign import template

pytestmark = pytest.mark.timeout(180)

SENT_OR_LATER = {"SENT", "COMPLETED"}


@pytest.fixture(scope="module")
def platform(stack_info: StackInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("platform")
    with Platform(
        root,
        gateway_port=free_port(),
        running_stack=stack_info,
        service_env={"MONGODB_DB": "e2e_schedule", "SQS_WAIT_SECONDS": "1"},
    ) as running:
        yield running


@pytest.fixture
def client(platform: Platform) -> Iterator[PlatformClient]:
    assert platform.api_key is not None
    with PlatformClient(platform.gateway_url, api_key=platform.api_key) as c:
        yield c


def _wait(client: PlatformClient, tx_id: str, statuses: set[str]) -> dict[str, object]:
    deadline = time.monotonic() + 90
    while (record := client.transaction(tx_id))["status"] not in statuses:
        assert time.monotonic() < deadline, record
        time.sleep(0.2)
    return record


def test_each_row_is_sent_at_its_own_time(
    client: PlatformClient, stack_info: StackInfo, examples: Path, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    offset_time = (now + timedelta(seconds=4)).replace(microsecond=0)
    local_time = (now + timedelta(seconds=6)).replace(microsecond=0)
    paris = local_time.astimezone(ZoneInfo("Europe/Paris")).replace(tzinfo=None)
    csv = tmp_path / "times.csv"
    csv.write_text(
        "email,first_name,city,send_at,timezone\n"
        "success+now@simulator.amazonses.com,Ada,London,,\n"
        f"success+offset@simulator.amazonses.com,Alan,Leeds,{offset_time.isoformat()},\n"
        f"success+local@simulator.amazonses.com,Grace,Paris,{paris.isoformat()},Europe/Paris\n"
        "success+bad@simulator.amazonses.com,Bad,Nowhere,2030-01-01T09:00,Mars/Base\n"
    )
    tx_id = client.submit(csv, template(client, examples))["transaction_id"]

    record = _wait(client, tx_id, SENT_OR_LATER)

    statuses = [entry["status"] for entry in record["status_history"]]  # type: ignore[index]
    assert statuses[:4] == ["ACCEPT", "PROCESSING", "READY_TO_SEND", "SENT"]
    # Rows due in the same minute share a slot, which fires at the later of their times.
    one_slot = slot_of(offset_time) == slot_of(local_time)
    first = local_time if one_slot else offset_time
    assert record["schedule"] == {  # type: ignore[comparison-overlap]
        "slots": 2 if one_slot else 3,
        "first_slot_at": first.isoformat().replace("+00:00", "Z"),
        "last_slot_at": local_time.isoformat().replace("+00:00", "Z"),
        "shift_seconds": 0.0,
    }
    assert [e["code"] for e in client.errors(tx_id)["items"]] == ["INVALID_TIMEZONE"]
    assert stack_info.sim_url is not None
    sends = {
        s["destination"][0].split("+")[1].split("@")[0]: datetime.fromisoformat(s["timestamp"])
        for s in httpx.get(f"{stack_info.sim_url}/_sim/sends", timeout=10).json()
        if s.get("tags", {}).get("transaction_id") == tx_id
    }
    assert set(sends) == {"now", "offset", "local"}
    assert sends["now"] < offset_time
    assert sends["offset"] >= offset_time
    assert sends["local"] >= local_time


def test_a_scheduled_campaign_cancelled_sends_nothing(
    client: PlatformClient, stack_info: StackInfo, examples: Path
) -> None:
    send_at = datetime.now(UTC) + timedelta(hours=1)
    accepted = client.submit(
        examples / "recipients.csv", template(client, examples), send_at=send_at.isoformat()
    )
    tx_id = accepted["transaction_id"]
    _wait(client, tx_id, {"SCHEDULED"})
    moved = client.reschedule(tx_id, (send_at + timedelta(hours=1)).isoformat())
    assert moved["schedule"]["shift_seconds"] == pytest.approx(3600, abs=1)

    client.cancel(tx_id)
    record = _wait(client, tx_id, {"CANCELLED"})

    counters = record["counters"]
    assert counters["cancelled"] == counters["total"]  # type: ignore[index]
    assert counters["scheduled"] == 0  # type: ignore[index]
    assert stack_info.sim_url is not None
    sends = httpx.get(f"{stack_info.sim_url}/_sim/sends", timeout=10).json()
    assert not [s for s in sends if s.get("tags", {}).get("transaction_id") == tx_id]
