"""NATS JetStream, wrapped at the edge: connect, publish with a business-key ``Nats-Msg-Id``.

Library errors become ``BrokerUnavailable`` here so callers only see our error tree.
"""

from __future__ import annotations

import msgspec
import nats
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import PubAck

from shared.errors import BrokerUnavailable
from shared.events import encode

__all__ = ["Broker", "connect_broker"]


class Broker:
    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream(timeout=10.0)

    async def publish(
        self,
        subject: str,
        event: msgspec.Struct,
        *,
        msg_id: str,
        headers: dict[str, str] | None = None,
    ) -> PubAck:
        """Publish and wait for the stream's ack; a retried publish with the same
        ``msg_id`` inside the duplicate window is stored once."""
        all_headers = {"Nats-Msg-Id": msg_id, **(headers or {})}
        try:
            return await self.js.publish(subject, encode(event), headers=all_headers)
        except (NatsError, TimeoutError) as e:
            raise BrokerUnavailable(f"publish to {subject} failed: {e!r}") from e

    async def close(self) -> None:
        if not self.nc.is_closed:
            await self.nc.drain()


async def connect_broker(url: str, name: str) -> Broker:
    try:
        nc = await nats.connect(
            url,
            name=name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            connect_timeout=5,
        )
    except (NatsError, OSError, TimeoutError) as e:
        raise BrokerUnavailable(f"cannot connect to NATS at {url}: {e!r}") from e
    return Broker(nc)
