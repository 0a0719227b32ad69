"""The SES simulator's own speed: SendEmail calls a second, and CPU per call on both sides.

    .venv/bin/python -m bench.sesim [--calls N] [--concurrency C] [--sink none|nats]

Starts the embedded stack with the simulator's rate far above what one client reaches,
then makes ``--calls`` SendEmail calls through aiobotocore (configured as the sender's
client is), ``--concurrency`` at a time, after a warm-up. Reports calls/s, the client's CPU
per call (this process) and the simulator's CPU per request (its ``/proc/<pid>/stat``). With
``--sink nats`` every send's events also go onto ``email.ses.events``, so the CPU includes
building and publishing them (delivered counts are checked before the numbers are taken).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import httpx
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from bench.cpu import cpu_seconds
from shared.broker import connect_broker
from shared.topology import ensure_topology
from stack.launcher import Stack, StackInfo

_WARM_UP = 300


async def send_all(info: StackInfo, calls: int, concurrency: int, sim_pid: int) -> None:
    config = AioConfig(retries={"max_attempts": 1}, max_pool_connections=64)
    client_cm = get_session().create_client(
        "sesv2",
        region_name=info.aws_region,
        endpoint_url=info.ses_endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - the local stack's fixed credentials
        config=config,
    )
    async with client_cm as ses:
        queue: asyncio.Queue[int] = asyncio.Queue()

        async def one(i: int) -> None:
            await ses.send_email(
                FromEmailAddress="bench@example.com",
                Destination={"ToAddresses": [f"user{i}@example.com"]},
                Content={
                    "Simple": {
                        "Subject": {"Data": f"Hello {i}", "Charset": "UTF-8"},
                        "Body": {"Html": {"Data": f"<p>Hi user {i}</p>", "Charset": "UTF-8"}},
                    }
                },
                EmailTags=[
                    {"Name": "message_id", "Value": f"bench-{i}"},
                    {"Name": "transaction_id", "Value": "bench"},
                    {"Name": "row", "Value": str(i)},
                ],
                ConfigurationSetName="email-platform",
            )

        async def worker() -> None:
            while not queue.empty():
                await one(queue.get_nowait())

        async def run(n: int, offset: int) -> None:
            for i in range(n):
                queue.put_nowait(offset + i)
            await asyncio.gather(*(worker() for _ in range(concurrency)))

        await run(_WARM_UP, 0)
        sim_before = cpu_seconds(sim_pid)
        cpu_before = time.process_time()
        began = time.perf_counter()
        await run(calls, _WARM_UP)
        elapsed = time.perf_counter() - began
        client_cpu = time.process_time() - cpu_before
        total = _WARM_UP + calls
        async with httpx.AsyncClient(base_url=info.sim_url or "") as http:
            for _ in range(100):  # the last outcomes wait event_delay, then the linger
                health = (await http.get("/_sim/health")).json()
                if not health["events_pending"]:
                    break
                await asyncio.sleep(0.1)
        sim_cpu = cpu_seconds(sim_pid) - sim_before
    assert health["sends"] >= total, health
    print(f"{calls:,} calls, {concurrency} at a time: {calls / elapsed:,.0f} calls/s")
    print(f"client CPU:    {client_cpu * 1000 / calls:.3f} ms per call")
    print(f"simulator CPU: {sim_cpu * 1000 / calls:.3f} ms per request (events delivered too)")
    print(f"events delivered: {health['events_delivered']:,}")


async def prepare_nats(info: StackInfo) -> None:
    broker = await connect_broker(info.nats_url, "bench-sesim")
    try:
        await ensure_topology(broker.js)
    finally:
        await broker.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sesim", description=__doc__)
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--sink", choices=["none", "nats"], default="none")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        Stack(Path(tmp), ses_sink=args.sink, max_send_rate=1_000_000, environ={}) as info,
    ):
        if args.sink == "nats":
            asyncio.run(prepare_nats(info))
        stack_pids = info.pids
        print(f"simulator sink: {args.sink}")
        asyncio.run(send_all(info, args.calls, args.concurrency, stack_pids["sesim"]))


if __name__ == "__main__":
    main()
