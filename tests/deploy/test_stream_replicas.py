"""``nats_stream_replicas`` reaches every stream and bucket ensure_topology creates."""

from __future__ import annotations

from typing import Any, cast

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StreamConfig
from nats.js.errors import NotFoundError

from shared.settings import ServiceSettings, load_settings
from shared.topology import STREAMS, ensure_topology


class FakeJetStream:
    def __init__(self) -> None:
        self.streams: list[StreamConfig] = []
        self.buckets: list[KeyValueConfig] = []

    async def update_stream(self, config: StreamConfig) -> None:
        raise NotFoundError

    async def add_stream(self, config: StreamConfig) -> None:
        self.streams.append(config)

    async def add_consumer(self, stream: str, config: Any) -> None:
        pass

    async def create_key_value(self, config: KeyValueConfig) -> None:
        self.buckets.append(config)


async def test_streams_and_buckets_get_the_configured_replicas() -> None:
    replicas = load_settings(ServiceSettings, {"NATS_STREAM_REPLICAS": "3"}).nats_stream_replicas
    js = FakeJetStream()
    await ensure_topology(cast(JetStreamContext, js), replicas)
    assert [s.name for s in js.streams] == [s.name for s in STREAMS]
    assert {s.num_replicas for s in js.streams} == {3}
    assert {b.replicas for b in js.buckets} == {3}
    # The shared definitions stay as they were.
    assert {s.num_replicas for s in STREAMS} == {None}


async def test_one_replica_by_default() -> None:
    js = FakeJetStream()
    await ensure_topology(cast(JetStreamContext, js))
    assert {s.num_replicas for s in js.streams} == {1}
    assert load_settings(ServiceSettings, {}).nats_stream_replicas == 1
