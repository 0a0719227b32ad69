"""The sender against the SES simulator: rate accuracy at configured rates, and its ceiling.

    .venv/bin/python -m bench.send [--rates 14,100,500] [--seconds 30]
                                   [--max-rate 5000] [--messages 20000]

One embedded stack (simulator on the ``none`` sink: no tracker needed) runs for the whole
bench. Each run starts the services that come before the sender (gateway, ingest,
scheduler) on a fresh database, submits a campaign of N valid rows through the API, waits
until ingest has stored it and the scheduler has released it, then starts the sender alone
and lets it send everything. The simulator's account rate is set to the sender's configured
rate (``POST /_sim/quota``), so a sender running above its rate for longer than the bucket's
one second of burst gets throttling errors, as it would from SES.

(a) For each of ``--rates``, ``rate x --seconds`` messages: the rate achieved over the
    steady part (the first and the last second of sends left out), the most sends in any
    sliding second (the ceiling: never above the rate), throttling errors (none allowed).
(b) ``--messages`` at ``--max-rate`` (far above what one process reaches): messages a
    second, and CPU per message over the middle 80 % of the sends, for the sender and for
    the servers it keeps busy.

Everything is measured on the simulator's send log (``GET /_sim/sends``: the time SES
accepted each mail) and its counters (``/_sim/health``), and on ``/proc/<pid>/stat``.

What it assumes of the sender: started as ``python -m services.sender`` with the
environment the platform gives its services (``Platform.env``: this process's environment,
``StackInfo.env()``, ``MONGODB_DB`` -- each run has a database of its own --,
``LOG_FORMAT=json``...) plus ``SES_MAX_SEND_RATE=<rate>``; it takes the released batches from
``email.send.batch``; it stops on SIGTERM and then logs one JSON line with ``"event":
"stopped"`` (or ``"sender stopped"``) and ``store_commands`` (its store round trips since it
started), from which trips per message are reported ("n/a" without that line).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench.cpu import cpu_seconds
from cli.client import PlatformClient
from stack.launcher import Stack, StackInfo
from stack.platform import Platform
from stack.processes import ProcessGroup, free_port

TEMPLATE = {
    "name": "bench-send",
    "subject": "Hello {{ first_name }}",
    "html": "<p>Dear {{ first_name }}, your plan is {{ plan }}.</p>",
    "text": "Dear {{ first_name }}, your plan is {{ plan }}.",
}
SERVERS = ("sesim", "store", "nats")
POLL = 0.2
STALL_SECONDS = 30.0  # no new send for this long ends a run
RELEASED = {"READY_TO_SEND", "SENT", "COMPLETED", "FAILED"}
GOAL_RATIO = 0.97
GOAL_PER_SECOND = 1_000
GOAL_TRIPS = 0.05


@dataclass(frozen=True)
class Sample:
    at: float
    sends: int
    cpu: dict[str, float]  # process name -> CPU seconds so far


@dataclass(frozen=True)
class Run:
    rate: float
    messages: int
    sent: int
    seconds: float  # first send to last
    steady_rate: float
    max_in_a_second: int
    max_in_a_steady_second: int  # the first and the last second left out
    throttled: int
    store_commands: int | None
    cpu_per_message: dict[str, float]  # over the middle 80 % of the sends
    sender_busy: float  # the sender's CPU seconds per wall second, same interval
    problem: str | None  # the sender exited early, or stopped making progress


def make_csv(rows: int) -> bytes:
    lines = ["email,first_name,plan"]
    lines += [f"user{i}@example.com,Name{i},plan-{i % 7}" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def sliding_max(times: list[float], window: float = 1.0) -> int:
    """The most timestamps within any ``window`` seconds (``times`` sorted)."""
    most, first = 0, 0
    for last, t in enumerate(times):
        while t - times[first] >= window:
            first += 1
        most = max(most, last - first + 1)
    return most


def _steady(times: list[float]) -> list[float]:
    """The times from one second after the first to one second before the last."""
    if not times:
        return []
    start, end = times[0] + 1.0, times[-1] - 1.0
    return [t for t in times if start <= t <= end]


def steady_rate(times: list[float]) -> float:
    """Sends a second between the first and the last second of the run (``times`` sorted)."""
    if not times or times[-1] - times[0] <= 2.0:
        return float("nan")
    return len(_steady(times)) / (times[-1] - times[0] - 2.0)


def stopped_line(log: Path) -> dict[str, Any] | None:
    """The sender's last words with its store round trips (JSON logs), if it wrote them:
    ``{"event": "stopped", "service": "sender", "store_commands": n}`` (shared/service.py),
    or a ``sender stopped`` line with ``store_commands``."""
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if "store_commands" not in line:
            continue
        try:
            record: dict[str, Any] = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("event") in ("stopped", "sender stopped") and "store_commands" in record:
            return record
    return None


class SendBench:
    """Runs one after another on one stack; each run in a database of its own, so what an
    earlier run stored does not slow a later one down."""

    def __init__(self, root: Path, stack: Stack, info: StackInfo) -> None:
        assert info.sim_url is not None
        self.root = root
        self.stack = stack
        self.info = info
        self.sim = httpx.Client(base_url=f"{info.sim_url}/_sim", timeout=60)
        self.senders = ProcessGroup(root / "senders")
        self.runs = 0

    def close(self) -> None:
        self.senders.stop_all()
        self.sim.close()

    def submit(self, platform: Platform, messages: int) -> str:
        """A campaign of ``messages`` valid rows, stored and released; its id."""
        assert platform.api_key is not None
        path = self.root / f"campaign-{messages}.csv"
        path.write_bytes(make_csv(messages))
        with PlatformClient(platform.gateway_url, api_key=platform.api_key, timeout=120) as api:
            template = api.create_template(TEMPLATE)
            tx_id: str = api.submit(path, template["id"])["transaction_id"]
            deadline = time.monotonic() + 300
            while (record := api.transaction(tx_id))["status"] not in RELEASED:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{tx_id} still {record['status']}")
                time.sleep(0.1)
        assert record["status"] == "READY_TO_SEND", record
        assert record["counters"]["total"] == messages, record["counters"]
        return tx_id

    def run(self, rate: float, messages: int) -> Run:
        self.runs += 1
        db = f"bench_send_{self.runs}"
        self.sim.post("/reset").raise_for_status()
        self.sim.post("/quota", json={"max_send_rate": rate}).raise_for_status()
        # The services before the sender (they idle while it sends, as they would in
        # production; stopping them earlier could cut the scheduler's release short).
        with Platform(
            self.root / f"platform-{self.runs}",
            gateway_port=free_port(),
            replicas={"sender": 0, "tracker": 0},
            service_env={"MONGODB_DB": db},
            running_stack=self.info,
        ) as platform:
            self.submit(platform, messages)
            # What the platform gives its services (the stack's addresses, MONGODB_DB,
            # LOG_FORMAT=json, the unsubscribe links' secret...), plus the rate.
            env = {**platform.env, "SES_MAX_SEND_RATE": str(rate)}
            return self.send(rate, messages, env)

    def send(self, rate: float, messages: int, env: dict[str, str]) -> Run:
        """Start a sender, wait until it has sent ``messages`` (or stalls), stop it."""
        name = f"sender-{self.runs}"
        child = self.senders.start(name, [sys.executable, "-m", "services.sender"], env=env)
        pids = {"sender": child.pid} | {s: self.stack.processes.pid(s) for s in SERVERS}
        samples = [self.sample(pids)]
        last_progress = time.monotonic()
        while samples[-1].sends < messages and child.poll() is None:
            time.sleep(POLL)
            samples.append(self.sample(pids))
            if samples[-1].sends > samples[-2].sends:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > STALL_SECONDS:
                break
        problem = None
        if (code := child.poll()) is not None:
            problem = f"the sender exited with code {code} after {samples[-1].sends:,} sends"
        elif samples[-1].sends < messages:
            problem = f"no progress for {STALL_SECONDS:g}s at {samples[-1].sends:,} sends"
        time.sleep(1.0)  # anything sent twice would land now
        health = self.sim.get("/health").json()
        self.senders.stop(name, timeout=30)
        if problem:
            tail = self.senders.log_path(name).read_text(errors="replace").splitlines()[-8:]
            problem += "; the end of its log:\n    " + "\n    ".join(tail)

        records = self.sim.get("/sends").json()
        times = sorted(datetime.fromisoformat(r["timestamp"]).timestamp() for r in records)
        stopped = stopped_line(self.senders.log_path(name))
        low, high = _around(samples, 0.1 * messages), _around(samples, 0.9 * messages)
        sent_between = max(1, high.sends - low.sends)
        return Run(
            rate=rate,
            messages=messages,
            sent=len(records),
            seconds=times[-1] - times[0] if times else 0.0,
            steady_rate=steady_rate(times),
            max_in_a_second=sliding_max(times),
            max_in_a_steady_second=sliding_max(_steady(times)),
            throttled=int(health["throttled"]),
            store_commands=None if stopped is None else int(stopped["store_commands"]),
            cpu_per_message={
                p: (high.cpu[p] - low.cpu[p]) / sent_between for p in ("sender", *SERVERS)
            },
            sender_busy=(high.cpu["sender"] - low.cpu["sender"]) / max(high.at - low.at, 1e-9),
            problem=problem,
        )

    def sample(self, pids: dict[str, int]) -> Sample:
        sends = int(self.sim.get("/health").json()["sends"])
        return Sample(time.monotonic(), sends, {n: cpu_seconds(pid) for n, pid in pids.items()})


def _around(samples: list[Sample], sends: float) -> Sample:
    """The first sample with at least ``sends`` sends (the last one if none has)."""
    return next((s for s in samples if s.sends >= sends), samples[-1])


def _trips(run: Run) -> str:
    if run.store_commands is None:
        return "n/a"
    return f"{run.store_commands / max(run.sent, 1):.3f}"


def _mark(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def report(accuracy: list[Run], ceiling: Run | None) -> None:
    for run in [*accuracy, *([ceiling] if ceiling else [])]:
        if run.problem:
            print(f"WARNING at {run.rate:g}/s: {run.problem}")
    if accuracy:
        print()
        print("(a) rate accuracy: simulator's account rate = the sender's configured rate")
        print(
            f"{'rate/s':>7} {'messages':>8} {'sent':>6} {'seconds':>7} {'steady/s':>9} "
            f"{'ratio':>6} {'max 1 s':>7} {'(steady)':>8} {'throttled':>9} {'trips/msg':>9} "
            f"{'CPU ms/msg':>10}  goal"
        )
        for run in accuracy:
            ratio = run.steady_rate / run.rate
            ok = (
                ratio >= GOAL_RATIO
                and run.throttled == 0
                and run.max_in_a_second <= run.rate
                and run.sent == run.messages
            )
            print(
                f"{run.rate:>7g} {run.messages:>8,} {run.sent:>6,} {run.seconds:>7.1f} "
                f"{run.steady_rate:>9.1f} {ratio:>6.3f} {run.max_in_a_second:>7,} "
                f"{run.max_in_a_steady_second:>8,} {run.throttled:>9,} {_trips(run):>9} "
                f"{run.cpu_per_message['sender'] * 1000:>10.3f}  {_mark(ok)}"
            )
        print(
            f"goal: ratio >= {GOAL_RATIO}, no throttling, max 1 s <= rate, each sent once\n"
            "(max 1 s: the most sends in any sliding second of the whole run; the simulator's "
            "token bucket holds a second's worth, so a burst above the rate is not throttled: "
            "this column is the ceiling's check)"
        )
    if ceiling is not None:
        run = ceiling
        cpu = run.cpu_per_message
        print()
        print(f"(b) one sender process, configured {run.rate:g}/s: {run.messages:,} messages")
        print(
            f"steady rate:      {run.steady_rate:>9,.0f} messages/s "
            f"(goal >= {GOAL_PER_SECOND:,}: {_mark(run.steady_rate >= GOAL_PER_SECOND)})"
        )
        print(f"sent / messages:  {run.sent:>9,} / {run.messages:,} in {run.seconds:.1f}s")
        print(f"throttled:        {run.throttled:>9,}")
        print(
            f"sender CPU:       {cpu['sender'] * 1000:>9.3f} ms per message "
            f"({run.sender_busy:.0%} of a core)"
        )
        print(
            "servers' CPU:     "
            + ", ".join(f"{p} {cpu[p] * 1000:.3f}" for p in SERVERS)
            + " ms per message"
        )
        trips = _trips(run)
        ok = run.store_commands is not None and run.store_commands / run.sent <= GOAL_TRIPS
        verdict = "n/a: no 'stopped' line with store_commands" if trips == "n/a" else _mark(ok)
        print(f"store round trips: {trips:>8} per message (goal <= {GOAL_TRIPS}: {verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.send", description=__doc__)
    parser.add_argument("--rates", default="14,100,500", help="(a): comma-separated, per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="(a): length of each run")
    parser.add_argument("--max-rate", type=float, default=5_000.0, help="(b): configured rate")
    parser.add_argument("--messages", type=int, default=20_000, help="(b): messages; 0: skip")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    top = max([*rates, args.max_rate])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        stack = Stack(root / "stack", ses_sink="none", max_send_rate=top, environ={})
        with stack as info:
            bench = SendBench(root, stack, info)
            try:
                accuracy = []
                for rate in rates:
                    messages = round(rate * args.seconds)
                    print(f"(a) {messages:,} messages at {rate:g}/s ...", flush=True)
                    accuracy.append(bench.run(rate, messages))
                ceiling = None
                if args.messages:
                    print(f"(b) {args.messages:,} messages at {args.max_rate:g}/s ...", flush=True)
                    ceiling = bench.run(args.max_rate, args.messages)
            finally:
                bench.close()
    report(accuracy, ceiling)


if __name__ == "__main__":
    main()
