"""NATS JetStream, wrapped at the edge: connect, publish with a business-key ``Nats-Msg-Id``.

Library errors become ``BrokerUnavailable`` here so callers only see our error tree.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import msgspec
import nats
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import PubAck

from shared.errors import BrokerUnavailable
from shared.events import encode

__all__ = ["DRAIN_SECONDS", "Broker", "connect_broker"]

# The longest a closing connection waits to deliver what it buffered.
DRAIN_SECONDS = 5.0

log = structlog.get_logger("broker")


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

    async def publish_raw(self, subject: str, payload: bytes, *, msg_id: str) -> PubAck:
        """``publish`` of bytes as they are: a dead letter's payload, put back by an
        operator (it may not even decode)."""
        try:
            return await self.js.publish(subject, payload, headers={"Nats-Msg-Id": msg_id})
        except (NatsError, TimeoutError) as e:
            raise BrokerUnavailable(f"publish to {subject} failed: {e!r}") from e

    @contextlib.asynccontextmanager
    async def listen(
        self, subject: str, on_message: Callable[[bytes], None]
    ) -> AsyncIterator[None]:
        """Call ``on_message`` with the payload of every message published on ``subject``
        (wildcards allowed) while inside: a plain subscription, no consumer, nothing kept
        once it ends -- for watching, as the gateway's live progress does."""

        async def deliver(msg: Msg) -> None:
            on_message(msg.data)

        try:
            sub = await self.nc.subscribe(subject, cb=deliver)
        except (NatsError, TimeoutError) as e:
            raise BrokerUnavailable(f"subscribe to {subject} failed: {e!r}") from e
        try:
            yield
        finally:
            with contextlib.suppress(NatsError, TimeoutError):
                await sub.unsubscribe()

    async def purge(self, stream: str, subject: str) -> None:
        """Remove every message of ``stream`` on ``subject`` (wildcards allowed)."""
        try:
            await self.js.purge_stream(stream, subject=subject)
        except (NatsError, TimeoutError) as e:
            raise BrokerUnavailable(f"purge of {subject} in {stream} failed: {e!r}") from e

    async def close(self) -> None:
        """Drain (deliver what is buffered, then close); if the server is gone, just close:
        a service told to stop must stop even when NATS stopped first."""
        if self.nc.is_closed:
            return
        try:
            async with asyncio.timeout(DRAIN_SECONDS):
                await self.nc.drain()
        except (NatsError, TimeoutError, OSError):
            # Closing flushes what is buffered too: on a lost connection, that fails.
            with contextlib.suppress(OSError):
                await self.nc.close()


async def connect_broker(url: str, name: str) -> Broker:
    # One line per connection event instead of nats-py's default tracebacks.
    async def on_error(e: Exception) -> None:
        log.warning("nats error", error=repr(e))

    async def on_disconnect() -> None:
        log.warning("nats disconnected")

    async def on_reconnect() -> None:
        log.info("nats reconnected")

    try:
        nc = await nats.connect(
            # One server or a cluster's, comma-separated (deploy/compose.yaml).
            [server.strip() for server in url.split(",") if server.strip()],
            name=name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            connect_timeout=5,
            error_cb=on_error,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
        )
    except (NatsError, OSError, TimeoutError) as e:
        raise BrokerUnavailable(f"cannot connect to NATS at {url}: {e!r}") from e
    return Broker(nc)
