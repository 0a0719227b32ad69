"""One campaign end to end on the embedded stack, beside the floors it cannot beat, in one run.

    .venv/bin/python -m bench.e2e [--recipients 100000] [--rate 1000] [--load-rate 200]

A stack and a platform of the bench's own (the simulator's ceiling and the sender's
``SES_MAX_SEND_RATE`` at ``--rate``, SES events straight onto NATS), a campaign of
``success+N@simulator.amazonses.com`` recipients, and:

(a) the seconds from the submit (the upload's start) until the transaction leaves
    PROCESSING, until SENT and until COMPLETED, from its ``status_history``; beside them
    the floors: ``N / rate`` and the store's own time for the same documents written the way
    the services write them (``insert_many`` in batches, then the sender's and the tracker's
    ``update_many``/``bulk_write``/counter updates), timed on a scratch database of the same
    store after the campaign. Goal: SENT within 1.3 x max(N / rate, the store's floor up to
    SENT).
(b) ``GET /api/v1/transactions/{id}`` latency (p50/p99) while the campaign runs, at
    ``--load-rate`` requests a second of fixed arrival times (open loop: a slow answer does
    not delay the next request), beside ``GET /health/live`` (no store, no auth) at the same
    rate in the same run. Goal: the status endpoint's p99 within 3x the trivial one's.
    ``--load-rate 0`` leaves the campaign unloaded (the store serves each status GET, so
    the load slows the campaign down); the latencies are then only measured before it.
(c) Store round trips and NATS messages per recipient over the campaign. Store round trips:
    each service's own count of its store commands (its ``stopped`` log line, since it
    started), the gateway's left out (it serves the load generator); beside it SecantusDB's
    ``serverStatus`` ``network.numRequests`` (every request any client sent) per status GET.
    NATS: the monitoring endpoint's ``/jsz`` (messages published into each JetStream
    stream) and ``/varz`` (every message clients published: acks, pull requests and
    JetStream API calls included). Goals: <= 0.05 store round trips and <= 0.02 NATS stream
    messages per recipient.

A one-recipient campaign first warms the platform up and gives the calibration a
transaction to read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import httpx
import pymongo
from pymongo import UpdateOne

from bench.cpu import cpu_seconds
from bench.scratch import on_scratch
from cli.client import FINAL, PlatformClient
from shared.documents import Message, SendReceipt, message_id, to_document
from shared.message_ranges import find_messages, update_messages
from shared.status import MessageStatus as M
from shared.store import Store, insert_new
from stack.launcher import Stack, StackInfo
from stack.platform import SERVICES, Platform
from stack.processes import free_port

TEMPLATE = {
    "name": "bench-e2e",
    "subject": "Hello {{ name }}",
    "html": "<p>Dear {{ name }}, this is the end-to-end bench.</p>",
    "text": "Dear {{ name }}, this is the end-to-end bench.",
}
DB = "bench_e2e"
SCRATCH_DB = "bench_e2e_raw"
BATCH = 500  # BATCH_SIZE's default: ingest's insert_many, the scheduler's batches
# The sender's chunk at 1000/s with the default settings: a whole batch (a chunk is a
# second of the rate, at most SEND_CHUNK_SIZE 1000).
CHUNK = BATCH
CALIBRATION_SECONDS = 10.0
CALIBRATION_RATE = 50.0  # requests/s each, when there is no --load-rate to calibrate at
GOAL_SENT = 1.3
GOAL_P99 = 3.0
GOAL_TRIPS = 0.05
GOAL_NATS = 0.02


# -- pure helpers ----------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100): a value that was measured."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n q / 100), at least the first
    return ordered[int(rank) - 1]


def milestones(history: Sequence[Mapping[str, Any]], submitted: datetime) -> dict[str, float]:
    """Seconds from ``submitted`` to each step of a transaction's ``status_history``:
    ``ACCEPT``, ``PROCESSING done`` (the next entry after PROCESSING, whatever it is), and
    every later status by name (``SENT``, ``COMPLETED``...)."""
    out: dict[str, float] = {}
    previous: str | None = None
    for entry in history:
        status = str(entry["status"])
        at = (datetime.fromisoformat(entry["timestamp"]) - submitted).total_seconds()
        if previous == "PROCESSING":
            out["PROCESSING done"] = at
        out.setdefault(status, at)
        previous = status
    return out


# -- the servers' counters ---------------------------------------------------------------


@dataclass(frozen=True)
class Counters:
    at: float
    store_requests: int
    nats_in: int
    nats_out: int
    js_api: int
    streams: dict[str, int]  # stream name -> last sequence
    cpu: dict[str, float]  # process name -> CPU seconds so far


def read_counters(
    store: pymongo.MongoClient[dict[str, Any]], monitor: str, pids: Mapping[str, int]
) -> Counters:
    status = store.admin.command("serverStatus")
    varz = httpx.get(f"{monitor}/varz", timeout=10).json()
    jsz = httpx.get(f"{monitor}/jsz", params={"streams": "true"}, timeout=10).json()
    streams = {
        s["name"]: int(s["state"]["last_seq"])
        for account in jsz.get("account_details", [])
        for s in account.get("stream_detail", [])
    }
    return Counters(
        at=time.monotonic(),
        store_requests=int(status["network"]["numRequests"]),
        nats_in=int(varz["in_msgs"]),
        nats_out=int(varz["out_msgs"]),
        js_api=int(jsz["api"]["total"]),
        streams=streams,
        cpu={name: cpu_seconds(pid) for name, pid in pids.items()},
    )


def process_ids(platform: Platform) -> dict[str, int]:
    """The stack's servers, the services and this process (the load generator)."""
    assert platform.info is not None
    services = {name: platform.processes.pid(name) for name in SERVICES}
    return {**platform.info.pids, **services, "bench (load)": os.getpid()}


def stream_growth(before: Counters, after: Counters) -> dict[str, int]:
    return {
        name: seq - before.streams.get(name, 0)
        for name, seq in sorted(after.streams.items())
        if seq != before.streams.get(name, 0)
    }


# -- the load generator --------------------------------------------------------------------


@dataclass
class Target:
    name: str
    url: str
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)  # HTTP status or exception -> count
    late: int = 0  # requests sent more than one interval after their arrival time


@dataclass
class Load:
    """Requests at fixed arrival times to each target (open loop), until ``stop`` is set;
    ``final`` is the last transaction record seen with a final status."""

    targets: list[Target]
    rate: float
    until_final: bool
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    final: dict[str, Any] | None = None

    async def run(self, session: aiohttp.ClientSession) -> None:
        tasks: set[asyncio.Task[None]] = set()
        async with asyncio.TaskGroup() as group:
            for k, target in enumerate(self.targets):
                # Each target's arrivals offset by a share of the interval: not all at once.
                offset = k / (self.rate * len(self.targets))
                group.create_task(self._arrivals(session, target, offset, tasks))
        if tasks:
            await asyncio.gather(*tasks)

    async def _arrivals(
        self,
        session: aiohttp.ClientSession,
        target: Target,
        offset: float,
        tasks: set[asyncio.Task[None]],
    ) -> None:
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.rate
        start = loop.time() + offset
        n = 0
        while not self.stop.is_set():
            due = start + n * interval
            now = loop.time()
            if due > now:
                await asyncio.sleep(due - now)
            elif now - due > interval:
                target.late += 1
            task = asyncio.create_task(self._one(session, target))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1

    async def _one(self, session: aiohttp.ClientSession, target: Target) -> None:
        began = time.perf_counter()
        try:
            async with session.get(target.url) as response:
                body = await response.read()
                ok = response.status == 200
        except (aiohttp.ClientError, TimeoutError) as e:
            target.errors[type(e).__name__] += 1
            return
        target.latencies.append(time.perf_counter() - began)
        if not ok:
            target.errors[str(response.status)] += 1
            return
        if self.until_final and target.name == "status":
            record: dict[str, Any] = json.loads(body)
            if record["status"] in FINAL:
                self.final = record
                self.stop.set()


async def run_load(
    platform: Platform,
    tx_id: str,
    rate: float,
    *,
    seconds: float,
    until_final: bool,
    live: bool = True,
) -> Load:
    """``GET`` the transaction (and ``/health/live``, if ``live``) at ``rate`` each, for
    ``seconds`` (or until the transaction is final, if ``until_final``, whichever comes
    first)."""
    base = platform.gateway_url
    targets = [Target("status", f"{base}/api/v1/transactions/{tx_id}")]
    if live:
        targets.append(Target("live", f"{base}/health/live"))
    load = Load(
        targets,
        rate,
        until_final,
    )
    headers = {"Authorization": f"Bearer {platform.api_key}"}
    connector = aiohttp.TCPConnector(limit=512)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(
        headers=headers, connector=connector, timeout=timeout
    ) as session:
        # Connections open before the clock starts: a burst of connects is not the
        # endpoints' latency.
        await asyncio.gather(*(_touch(session, f"{base}/health/live") for _ in range(16)))
        asyncio.get_running_loop().call_later(seconds, load.stop.set)
        await load.run(session)
    return load


async def _touch(session: aiohttp.ClientSession, url: str) -> None:
    async with session.get(url) as response:
        await response.read()


# -- the store's floor ---------------------------------------------------------------------


async def store_floor(uri: str, n: int) -> dict[str, float]:
    """Seconds the store takes for ``n`` messages written as the services write them, by
    step; on a scratch database (same indexes), dropped afterwards."""
    return await on_scratch(uri, SCRATCH_DB, lambda store: _floor_steps(store, n))


async def _floor_steps(store: Store, n: int) -> dict[str, float]:
    tx = "raw"
    now = datetime.now(UTC)
    await store.transactions.insert_one({"_id": tx, "counters": {}})
    ids = [message_id(tx, row) for row in range(2, n + 2)]
    docs = [
        to_document(
            Message(
                id=ids[i],
                transaction_id=tx,
                tenant="local",
                batch=i // BATCH,
                row=i + 2,
                email=f"success+{i}@simulator.amazonses.com",
                data={"name": f"U{i}"},
                status=M.READY_TO_SEND,
                updated_at=now,
            )
        )
        for i in range(n)
    ]
    chunks = [ids[i : i + CHUNK] for i in range(0, n, CHUNK)]
    spent: dict[str, float] = {}

    async def move(
        chunk: list[str], old: M, new: M, also: Mapping[str, Any], guard: Mapping[str, Any]
    ) -> None:
        # move_messages' commands (without its store transaction: a floor): the messages'
        # update, then the counters.
        moved = await update_messages(
            store.messages,
            chunk,
            {"status": old, **guard},
            {"$set": {"status": new, "updated_at": now, **also}},
        )
        inc = {f"counters.{old.lower()}": -moved, f"counters.{new.lower()}": moved}
        await store.transactions.update_one({"_id": tx}, {"$inc": inc})

    def receipts(chunk: list[str]) -> list[dict[str, Any]]:
        return [
            to_document(
                SendReceipt(id=i, transaction_id=tx, ses_message_id=f"ses-{i}", at=now, source="s")
            )
            for i in chunk
        ]

    began = time.perf_counter()
    for start in range(0, n, BATCH):
        await store.messages.insert_many(docs[start : start + BATCH], ordered=False)
    spent["ingest: insert_many"] = time.perf_counter() - began

    began = time.perf_counter()
    for chunk in chunks:
        await move(chunk, M.READY_TO_SEND, M.SENDING, {"attempt_id": "a", "lease_until": now}, {})
    spent["sender: claim (update_many + $inc)"] = time.perf_counter() - began

    began = time.perf_counter()
    for chunk in chunks:
        await insert_new(store.sends, receipts(chunk))
        # Only the messages still under the sender's attempt, as the sender records them.
        await move(chunk, M.SENDING, M.SENT, {"sent_at": now}, {"attempt_id": "a"})
    spent["sender: receipts + SENT (insert_many, update_many + $inc)"] = time.perf_counter() - began

    began = time.perf_counter()
    for chunk in chunks:
        await insert_new(store.sends, receipts(chunk))  # the Send events' receipts: all known
        [_ async for _ in find_messages(store.messages, chunk)]
        # Each message moved with its events in one write (move_messages' ``each``).
        kinds = ["Send", "Delivery"]
        events = {"$each": [{"key": kind} for kind in kinds]}
        writes = [
            UpdateOne(
                {"_id": i, "status": M.SENT, "events.key": {"$nin": kinds}},
                {"$set": {"status": M.DELIVERED, "updated_at": now}, "$push": {"events": events}},
            )
            for i in chunk
        ]
        moved = (await store.messages.bulk_write(writes, ordered=False)).modified_count
        inc = {"counters.sent": -moved, "counters.delivered": moved}
        await store.transactions.update_one({"_id": tx}, {"$inc": inc})
    spent["tracker: receipts, read, DELIVERED with events (bulk_write)"] = (
        time.perf_counter() - began
    )
    return spent


# -- the run ---------------------------------------------------------------------------------


def recipients_csv(path: Path, n: int) -> Path:
    lines = ["email,name", *(f"success+{i}@simulator.amazonses.com,U{i}" for i in range(n))]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass(frozen=True)
class Calibration:
    idle_nats_in_per_s: float
    idle_streams_per_s: float
    quiet: Load  # the load generator's latencies with no campaign running


def calibrate(
    platform: Platform, tx_id: str, rate: float, store: pymongo.MongoClient[dict[str, Any]]
) -> Calibration:
    assert platform.info is not None
    assert platform.info.nats_monitor_url is not None
    monitor = platform.info.nats_monitor_url
    pids = process_ids(platform)
    first = read_counters(store, monitor, pids)
    time.sleep(CALIBRATION_SECONDS)
    idle = read_counters(store, monitor, pids)
    quiet = asyncio.run(
        run_load(platform, tx_id, rate, seconds=CALIBRATION_SECONDS, until_final=False)
    )
    idle_seconds = idle.at - first.at
    return Calibration(
        idle_nats_in_per_s=(idle.nats_in - first.nats_in) / idle_seconds,
        idle_streams_per_s=sum(stream_growth(first, idle).values()) / idle_seconds,
        quiet=quiet,
    )


@dataclass(frozen=True)
class Campaign:
    recipients: int
    record: dict[str, Any]
    times: dict[str, float]
    load: Load
    before: Counters
    after: Counters


def campaign(
    platform: Platform,
    template_id: str,
    n: int,
    load_rate: float,
    store: pymongo.MongoClient[dict[str, Any]],
    csv: Path,
    timeout: float,
) -> Campaign:
    assert platform.info is not None
    assert platform.info.nats_monitor_url is not None
    assert platform.api_key is not None
    monitor = platform.info.nats_monitor_url
    pids = process_ids(platform)
    before = read_counters(store, monitor, pids)
    submitted = datetime.now(UTC)
    with PlatformClient(platform.gateway_url, api_key=platform.api_key, timeout=600) as api:
        tx_id: str = api.submit(csv, template_id)["transaction_id"]
    print(f"submitted {tx_id} in {(datetime.now(UTC) - submitted).total_seconds():.1f}s")

    async def loaded() -> Load:
        # Until the transaction is final, or at the latest ``timeout`` seconds. Without a
        # load, the transaction is polled once a second.
        load = await run_load(
            platform,
            tx_id,
            load_rate or 1.0,
            seconds=timeout,
            until_final=True,
            live=load_rate > 0,
        )
        if load.final is None:
            print(f"WARNING: {tx_id} not final after {timeout:g}s")
        return load

    load = asyncio.run(loaded())
    after = read_counters(store, monitor, pids)
    with PlatformClient(platform.gateway_url, api_key=platform.api_key, timeout=60) as api:
        record = api.transaction(tx_id)
    return Campaign(
        recipients=n,
        record=record,
        times=milestones(record["status_history"], submitted),
        load=load,
        before=before,
        after=after,
    )


class ServiceCommands(NamedTuple):
    total: int
    by_kind: dict[str, int]  # "command collection" -> commands


def service_commands(platform: Platform) -> dict[str, ServiceCommands]:
    """Each worker service process's store commands since it started (its ``stopped``
    line); read after the platform has stopped."""
    counts: dict[str, ServiceCommands] = {}
    for name in SERVICES:
        try:
            text = platform.processes.log_path(name).read_text(errors="replace")
        except (KeyError, FileNotFoundError):
            continue
        for line in reversed(text.splitlines()):
            if '"store_commands"' not in line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("event") == "stopped":
                counts[name] = ServiceCommands(
                    int(record["store_commands"]), dict(record.get("store_commands_by", {}))
                )
                break
    return counts


# -- the report ------------------------------------------------------------------------------


def _mark(ok: bool) -> str:
    return "goal met" if ok else "goal MISSED"


def _latency_line(target: Target) -> str:
    ms = [s * 1000 for s in target.latencies]
    return (
        f"{target.name:<7} {len(ms):>7,} answers  p50 {percentile(ms, 50):>8.1f} ms  "
        f"p99 {percentile(ms, 99):>8.1f} ms  max {max(ms, default=float('nan')):>8.1f} ms  "
        f"errors {dict(target.errors) or 0}, sent late {target.late}"
    )


def report(
    args: argparse.Namespace,
    run: Campaign,
    calibration: Calibration,
    floor: dict[str, float],
    by_service: dict[str, ServiceCommands],
) -> None:
    n, rate = run.recipients, args.rate
    record = run.record
    print()
    print(f"campaign: {n:,} recipients at {rate:g}/s; final status {record['status']}, ")
    print(f"  counters {record['counters']}")
    if record["status"] != "COMPLETED" or record["counters"].get("delivered") != n:
        print("WARNING: not every recipient was delivered; the numbers below are suspect")

    print()
    print("(a) seconds from the submit (the upload's start)")
    for name in ("ACCEPT", "PROCESSING done", "READY_TO_SEND", "SENT", "COMPLETED"):
        if name in run.times:
            print(f"  {name:<16} {run.times[name]:>8.1f}s")
    rate_floor = n / rate
    to_sent = sum(v for k, v in floor.items() if not k.startswith("tracker"))
    whole = sum(floor.values())
    print(f"  floor N / rate:                 {rate_floor:>8.1f}s")
    for step, seconds in floor.items():
        print(f"  store floor, {step:<58} {seconds:>7.1f}s ({n / seconds:>8,.0f}/s)")
    print(f"  store floor up to SENT:         {to_sent:>8.1f}s")
    print(f"  store floor, whole campaign:    {whole:>8.1f}s")
    sent = run.times.get("SENT", float("nan"))
    bound = GOAL_SENT * max(rate_floor, to_sent)
    print(
        f"  SENT {sent:.1f}s vs {GOAL_SENT} x max(N/rate, store floor to SENT) = {bound:.1f}s: "
        f"{_mark(sent <= bound)}"
    )
    if "COMPLETED" in run.times:
        print(
            f"  (COMPLETED {run.times['COMPLETED']:.1f}s vs {GOAL_SENT} x max(N/rate, whole "
            f"store floor) = {GOAL_SENT * max(rate_floor, whole):.1f}s: for information)"
        )

    print()
    status = run.load.targets[0]
    if args.load_rate > 0:
        print(f"(b) latency at {args.load_rate:g} requests/s each (open loop), during the campaign")
        live = run.load.targets[1]
        for target in run.load.targets:
            print("  " + _latency_line(target))
        p99_status = percentile([s * 1000 for s in status.latencies], 99)
        p99_live = percentile([s * 1000 for s in live.latencies], 99)
        print(
            f"  p99 status / p99 live = {p99_status / p99_live:.2f} (goal <= {GOAL_P99:g}): "
            f"{_mark(p99_status <= GOAL_P99 * p99_live)}"
        )
    else:
        print("(b) no load during the campaign (--load-rate 0: the status polled once a second)")
    rate = calibration.quiet.rate
    print(f"  the load before the campaign (no campaign running), {rate:g} requests/s each:")
    for target in calibration.quiet.targets:
        print("    " + _latency_line(target))

    print()
    print("(c) over the campaign (submit to final status)")
    before, after = run.before, run.after
    seconds = after.at - before.at
    raw = after.store_requests - before.store_requests
    # Answered GETs only: a request the client gave up on may never have reached the store.
    gets = len(status.latencies)
    print(
        f"  store requests (serverStatus network.numRequests): {raw:,} in {seconds:.1f}s, "
        f"{raw / max(gets, 1):.2f} per status GET answered ({gets:,}; the campaign's and "
        f"the idle platform's requests included: the gateway shares reads among GETs that "
        f"arrive together, so no fixed share per GET can be taken out)"
    )
    growth = stream_growth(before, after)
    stream_total = sum(growth.values())
    print(
        f"  NATS messages into JetStream streams: {stream_total:,} = "
        f"{stream_total / n:.4f} per recipient (goal <= {GOAL_NATS}): "
        f"{_mark(stream_total / n <= GOAL_NATS)}"
    )
    for name, count in growth.items():
        print(f"    {name:<24} {count:>9,}  ({count / n:.4f} per recipient)")
    nats_in = after.nats_in - before.nats_in
    print(
        f"  NATS messages clients published (/varz in_msgs; acks, pull requests, JetStream "
        f"API calls included): {nats_in:,} = {nats_in / n:.4f} per recipient "
        f"(idle platform: {calibration.idle_nats_in_per_s:.1f}/s); "
        f"out_msgs {after.nats_out - before.nats_out:,}; "
        f"JetStream API calls {after.js_api - before.js_api:,}"
    )
    print(f"  CPU seconds by process over the campaign ({seconds:.0f}s; 2 cores shared):")
    for name, spent in sorted(
        ((k, after.cpu[k] - before.cpu[k]) for k in after.cpu), key=lambda kv: -kv[1]
    ):
        print(f"    {name:<13} {spent:>7.1f}s  ({spent / seconds:>4.0%} of a core)")
    if by_service:
        print(
            "  store commands by service since it started (warm-up, calibration and idle "
            "time included; the gateway's not counted):"
        )
        for name, (count, by_kind) in sorted(by_service.items(), key=lambda kv: -kv[1].total):
            print(f"    {name:<10} {count:>9,}  ({count / n:.3f} per recipient)")
            for kind, kind_count in sorted(by_kind.items(), key=lambda kv: -kv[1])[:8]:
                print(f"      {kind:<30} {kind_count:>9,}")
        total = sum(commands.total for commands in by_service.values())
        print(
            f"    together   {total:>9,}  ({total / n:.3f} per recipient, goal <= {GOAL_TRIPS}: "
            f"{_mark(total / n <= GOAL_TRIPS)})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.e2e", description=__doc__)
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=1_000.0, help="SES's ceiling, per second")
    parser.add_argument(
        "--load-rate", type=float, default=200.0, help="requests/s per endpoint; 0: no load"
    )
    parser.add_argument("--timeout", type=float, default=None, help="seconds; default 10 N/rate")
    args = parser.parse_args()
    n = args.recipients
    timeout = args.timeout or max(600.0, 10 * n / args.rate)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        csv = recipients_csv(root / f"recipients-{n}.csv", n)
        port = free_port()
        stack = Stack(
            root / "stack",
            gateway_port=port,
            ses_sink="nats",
            max_send_rate=args.rate,
            environ={},
        )
        with stack as info:
            by_service, run, calibration, floor = _run(args, root, info, port, csv, n, timeout)
    report(args, run, calibration, floor, by_service)


def _run(
    args: argparse.Namespace,
    root: Path,
    info: StackInfo,
    port: int,
    csv: Path,
    n: int,
    timeout: float,
) -> tuple[dict[str, ServiceCommands], Campaign, Calibration, dict[str, float]]:
    platform = Platform(
        root / "platform",
        gateway_port=port,
        running_stack=info,
        service_env={
            "MONGODB_DB": DB,
            "SES_MAX_SEND_RATE": str(args.rate),
            # The key's request rate (20/s by default) above the load's: no 429s.
            "API_RATE_PER_SECOND": str(10 * (args.load_rate or CALIBRATION_RATE)),
            "API_RATE_BURST": str(int(10 * (args.load_rate or CALIBRATION_RATE))),
        },
    )
    store: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(info.mongodb_uri)
    try:
        with platform:
            assert platform.api_key is not None
            with PlatformClient(platform.gateway_url, api_key=platform.api_key) as api:
                template_id: str = api.create_template(TEMPLATE)["id"]
                warm = api.submit(recipients_csv(root / "warm-up.csv", 1), template_id)
                warm_record = api.wait(warm["transaction_id"], timeout=120)
            if warm_record["status"] != "COMPLETED":
                raise RuntimeError(f"the warm-up campaign ended {warm_record['status']}")
            print("calibrating (idle platform, then the load on the warm-up transaction)...")
            rate = args.load_rate or CALIBRATION_RATE
            calibration = calibrate(platform, warm["transaction_id"], rate, store)
            print(f"campaign of {n:,} recipients at {args.rate:g}/s ...", flush=True)
            run = campaign(platform, template_id, n, args.load_rate, store, csv, timeout)
        by_service = service_commands(platform)
        print("the store's floor for the same documents ...", flush=True)
        floor = asyncio.run(store_floor(info.mongodb_uri, n))
    finally:
        store.close()
    return by_service, run, calibration, floor


if __name__ == "__main__":
    main()
