"""The chaos rig (a stack whose store takes failpoints, the platform, a callback receiver)
and one trial: submit a campaign of known outcomes, inject faults from the moment it is
accepted until it is COMPLETED, let it settle, then check the invariants and classify every
message (tests/chaos/invariants.py, classify.py)."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
import msgspec
from pymongo.errors import PyMongoError

from cli.client import PlatformClient
from stack.launcher import Stack
from stack.platform import Platform
from stack.processes import free_port
from tests.chaos.campaign import make_campaign
from tests.chaos.faults import FAULTS
from tests.chaos.invariants import (
    classification,
    connect,
    dead_letter_ids,
    observe,
    redelivered_callbacks,
    violations,
)
from tests.chaos.receiver import CallbackReceiver

__all__ = ["ChaosRig", "TrialResult", "chaos_rig", "format_table", "run_trial"]

RATE: Final = 200  # the simulator's ceiling, and the sender's
DB: Final = "chaos"
_LOOPBACK: Final = "127.0.0.0/8,::1/128"


@dataclass
class ChaosRig:
    stack: Stack
    platform: Platform
    receiver: CallbackReceiver
    sim_url: str
    mongodb_uri: str
    root: Path
    nonce: str
    template_id: str = ""


class TrialResult(msgspec.Struct, frozen=True, kw_only=True):
    trial: int
    faults: list[str]
    messages: int
    counts: dict[str, int]  # lost, duplicated, unexpected, ok
    redelivered_callbacks: int
    seconds: float
    violations: list[str]
    tx_id: str


@contextmanager
def chaos_rig(root: Path, *, rate: int = RATE) -> Iterator[ChaosRig]:
    port = free_port()
    receiver = CallbackReceiver()
    stack = Stack(
        root / "stack",
        gateway_port=port,
        ses_sink="nats",
        max_send_rate=rate,
        environ={},
        store_test_commands=True,
    )
    service_env = {
        "MONGODB_DB": DB,
        "BATCH_SIZE": "200",
        "SES_MAX_SEND_RATE": str(rate),
        # A crashed attempt is settled within seconds, not minutes; the grace still covers
        # a NATS outage delaying the Send events.
        "SEND_LEASE_SECONDS": "3",
        "SEND_RESOLVE_GRACE_SECONDS": "10",
        "SEND_CHUNK_SIZE": "50",
        "CALLBACK_ALLOWED_NETWORKS": _LOOPBACK,
        # Retries for a minute and more: longer than any outage the trial makes.
        "CALLBACK_RETRY_SCHEDULE_SECONDS": "1,2,4,8,8,8,8,8,8,8,8,8,8,8,8,8,8,8,8,8",
    }
    with stack as info:
        platform = Platform(root, gateway_port=port, running_stack=info, service_env=service_env)
        with platform:
            assert info.sim_url is not None
            receiver.start()
            try:
                yield ChaosRig(
                    stack=stack,
                    platform=platform,
                    receiver=receiver,
                    sim_url=info.sim_url,
                    mongodb_uri=info.mongodb_uri,
                    root=root,
                    nonce=uuid.uuid4().hex[:6],
                )
            finally:
                receiver.stop()


def _wait_gateway(rig: ChaosRig, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{rig.platform.gateway_url}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("the gateway is not ready")


def _tx_status(db: Any, tx_id: str) -> str | None:
    try:
        doc = db.transactions.find_one({"_id": tx_id}, {"status": 1})
    except PyMongoError:
        return None  # the store is down or slow: ask again
    return None if doc is None else str(doc["status"])


def run_trial(
    rig: ChaosRig,
    trial: int,
    *,
    messages: int,
    faults: Sequence[str],
    timeout: float,
    settle: float = 90.0,
    gap: tuple[float, float] = (2.0, 6.0),
) -> TrialResult:
    """One campaign of ``messages`` rows with the ``faults`` (names of ``FAULTS``, chosen
    at random, one every ``gap`` seconds) injected until it is COMPLETED."""
    rnd = random.Random(f"{rig.nonce}:{trial}")
    began = time.monotonic()
    campaign = make_campaign(rig.root / f"trial-{trial}.csv", messages, f"{rig.nonce}t{trial}", rnd)
    client = connect(rig.mongodb_uri)
    db = client[DB]
    try:
        httpx.post(f"{rig.sim_url}/_sim/reset", timeout=10).raise_for_status()
        dead_before = dead_letter_ids(db)
        _wait_gateway(rig)
        with PlatformClient(rig.platform.gateway_url, api_key=rig.platform.api_key or "") as api:
            if not rig.template_id:
                rig.template_id = api.create_template(
                    {"name": "chaos", "subject": "Hi {{ name }}", "text": "Hello {{ name }}"}
                )["id"]
            tx_id = api.submit(campaign.csv, rig.template_id, callback_url=rig.receiver.url)[
                "transaction_id"
            ]

        injected: list[str] = []
        deadline = began + timeout
        next_fault = time.monotonic() + rnd.uniform(0.5, gap[0])
        while time.monotonic() < deadline and _tx_status(db, tx_id) != "COMPLETED":
            if faults and time.monotonic() >= next_fault:
                injected.append(FAULTS[rnd.choice(faults)](rig, rnd))
                next_fault = time.monotonic() + rnd.uniform(*gap)
            time.sleep(0.5)

        # Outcomes after COMPLETED (a complaint after its delivery) and callbacks in flight
        # may take a moment: check until everything holds or ``settle`` passes.
        settled_by = time.monotonic() + settle
        while True:
            try:
                seen = observe(db, rig.sim_url, tx_id, rig.receiver.received(), dead_before)
                found = violations(campaign, tx_id, seen)
            except PyMongoError as e:
                found = [f"store unreadable: {e!r}"]
                seen = None
            if not found or time.monotonic() >= settled_by:
                break
            time.sleep(2.0)
    finally:
        client.close()
    counts = classification(campaign, seen).counts() if seen is not None else {}
    return TrialResult(
        trial=trial,
        faults=injected,
        messages=messages,
        counts=counts,
        redelivered_callbacks=0 if seen is None else redelivered_callbacks(seen),
        seconds=round(time.monotonic() - began, 1),
        violations=found,
        tx_id=tx_id,
    )


_COLUMNS: Final = ("lost", "duplicated", "unexpected", "ok")


def format_table(results: Sequence[TrialResult]) -> str:
    """One row per trial and a total, as Jepsen prints its checker's counts."""
    head = f"{'trial':>5} {'faults':>6} {'rows':>6} " + " ".join(f"{c:>10}" for c in _COLUMNS)
    head += f" {'cb-redeliv':>10} {'seconds':>8}  invariants"
    lines = [head, "-" * len(head)]
    total = dict.fromkeys(_COLUMNS, 0)
    for r in results:
        for c in _COLUMNS:
            total[c] += r.counts.get(c, 0)
        verdict = "ok" if not r.violations else f"{len(r.violations)} FAILED"
        lines.append(
            f"{r.trial:>5} {len(r.faults):>6} {r.messages:>6} "
            + " ".join(f"{r.counts.get(c, 0):>10}" for c in _COLUMNS)
            + f" {r.redelivered_callbacks:>10} {r.seconds:>8}  {verdict}"
        )
    failed = sum(1 for r in results if r.violations)
    lines.append("-" * len(head))
    lines.append(
        f"{'total':>5} {sum(len(r.faults) for r in results):>6} "
        f"{sum(r.messages for r in results):>6} "
        + " ".join(f"{total[c]:>10}" for c in _COLUMNS)
        + f" {sum(r.redelivered_callbacks for r in results):>10} "
        f"{sum(r.seconds for r in results):>8.0f}  {failed} of {len(results)} trials failed"
    )
    return "\n".join(lines)
