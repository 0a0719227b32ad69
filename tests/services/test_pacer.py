"""The senders' shared rate ceiling, on a real NATS key-value bucket."""

from __future__ import annotations

import asyncio
import itertools
import uuid

from nats.js.api import KeyValueConfig

from services.sender.pacer import Pacer
from shared.service import Runtime


async def test_replicas_sharing_the_ceiling_never_go_above_it(runtime: Runtime) -> None:
    bucket = f"pacer-{uuid.uuid4().hex[:8]}"
    kv = await runtime.broker.js.create_key_value(KeyValueConfig(bucket=bucket, history=1))
    rate = 200.0
    replicas = [Pacer(kv, rate), Pacer(kv, rate), Pacer(kv, rate)]
    try:
        per_replica = await asyncio.gather(
            *(asyncio.gather(*(pacer.turn() for _ in range(100))) for pacer in replicas)
        )
    finally:
        await runtime.broker.js.delete_key_value(bucket)

    times = sorted(t for turns in per_replica for t in turns)
    # Every replica got its share, and the handed-out times of all of them together are at
    # least 1/rate apart: no second holds more than the rate.
    assert all(len(turns) == 100 for turns in per_replica)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 1 / rate - 1e-6
    window = 1 - 1e-6  # one second, less float rounding of the exact spacing
    assert max(sum(1 for t in times if start <= t < start + window) for start in times) <= rate


async def test_throttling_widens_one_replicas_spacing(runtime: Runtime) -> None:
    bucket = f"pacer-{uuid.uuid4().hex[:8]}"
    kv = await runtime.broker.js.create_key_value(KeyValueConfig(bucket=bucket, history=1))
    try:
        pacer = Pacer(kv, 100.0, block_seconds=0.05)
        pacer.throttled()
        times = [await pacer.turn() for _ in range(5)]
    finally:
        await runtime.broker.js.delete_key_value(bucket)
    assert pacer.pace < 1.0
    assert min(b - a for a, b in itertools.pairwise(times)) > 1 / 100.0
