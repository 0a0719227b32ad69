"""``/api/v1/transactions/{id}/events``: a transaction's live progress as Server-Sent Events.

    event: status     {"transaction_id", "status", "old_status", "timestamp", "metadata"}
    event: progress   the ``GET .../status`` body (``shared.progress``)
    event: end        {"transaction_id", "status"}: the stream closes after it

On connect: the current status and progress. Then every status change (one event per entry
of the status history: none is skipped, however fast they come) and every change of the
progress, then ``end`` once the transaction is COMPLETED, FAILED or CANCELLED.

How: the status events on ``email.tx.status.>`` (a plain subscription, for this connection
only) wake the stream at once; without them it reads the transaction (one read by ``_id``)
every ``_INTERVAL`` seconds, which bounds the progress events to a few per second. Both
come from the record: an event seen on NATS is only a reason to look. A comment line every
``_KEEPALIVE`` seconds of silence keeps proxies from closing a quiet stream (a scheduled
transaction may wait days).

Authenticated like every ``/api/v1`` request (``Authorization: Bearer``: the dashboard reads
the stream with ``fetch``); another tenant's transaction answers 404 as a missing one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
from litestar import Controller, get
from litestar.params import FromPath
from litestar.response import ServerSentEvent
from litestar.response.sse import ServerSentEventMessage

from services.gateway.deps import Deps
from services.gateway.errors import Code, error_responses
from services.gateway.records import find_transaction
from services.gateway.tenant import Tenant, own_transaction
from shared.broker import Broker
from shared.documents import Transaction
from shared.events import TxStatusChanged, decoder
from shared.progress import compute_progress
from shared.status import FINAL_TX_STATUSES, TxStatus
from shared.store import Store
from shared.topology import Subjects

__all__ = ["EndEvent", "EventStreamController", "StatusEvent", "transaction_events"]

# The most often the record is read, so the most often a progress event goes out.
_INTERVAL: Final = 0.5
_KEEPALIVE: Final = 15.0
# The browser's EventSource waits this long (ms) before reconnecting after a drop.
_RETRY_MS: Final = 2000

_encoder = msgspec.json.Encoder()


class StatusEvent(msgspec.Struct, frozen=True, kw_only=True):
    transaction_id: str
    status: TxStatus
    old_status: TxStatus | None
    timestamp: datetime
    metadata: dict[str, Any]


class EndEvent(msgspec.Struct, frozen=True, kw_only=True):
    transaction_id: str
    status: TxStatus


def _message(event: str, data: msgspec.Struct, seq: int) -> ServerSentEventMessage:
    return ServerSentEventMessage(event=event, data=_encoder.encode(data).decode(), id=seq)


async def transaction_events(
    store: Store, broker: Broker, tx: Transaction
) -> AsyncGenerator[ServerSentEventMessage, None]:
    """The stream of ``tx`` (its tenant's, checked by the caller), until it is final."""
    wake = asyncio.Event()
    watched = decoder(TxStatusChanged)

    def on_status(payload: bytes) -> None:
        try:
            changed = watched.decode(payload)
        except msgspec.DecodeError:
            return
        if changed.transaction_id == tx.id:
            wake.set()

    seq = 0
    # Subscribed before the first read: a change made in between still wakes the loop.
    async with broker.listen(f"{Subjects.TX_STATUS}.>", on_status):
        # The current status on connect; the earlier ones are history (GET .../audit).
        seen = max(0, len(tx.status_history) - 1)
        last_progress: Any = None
        quiet_since = time.monotonic()
        current: Transaction | None = tx
        while current is not None:
            history = current.status_history
            for n in range(seen, len(history)):
                seq += 1
                old = history[n - 1].status if n > 0 else None
                entry = history[n]
                yield _message(
                    "status",
                    StatusEvent(
                        transaction_id=tx.id,
                        status=entry.status,
                        old_status=old,
                        timestamp=entry.at,
                        metadata=entry.metadata,
                    ),
                    seq,
                )
            seen = len(history)
            progress = compute_progress(current, datetime.now(UTC))
            # The estimate moves with the clock: a change of the numbers is what counts.
            shown = (progress.status, progress.progress)
            if shown != last_progress:
                last_progress = shown
                seq += 1
                yield _message("progress", progress, seq)
                quiet_since = time.monotonic()
            if current.status in FINAL_TX_STATUSES:
                seq += 1
                yield _message("end", EndEvent(transaction_id=tx.id, status=current.status), seq)
                return
            if time.monotonic() - quiet_since >= _KEEPALIVE:
                yield ServerSentEventMessage(data=None, comment="keep-alive")
                quiet_since = time.monotonic()
            wake.clear()
            # A status event wakes at once (a transaction has a handful); else the next
            # look in ``_INTERVAL``.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_INTERVAL):
                    await wake.wait()
            current = await find_transaction(store, tx.tenant, tx.id)


class EventStreamController(Controller):
    path = "/transactions/{transaction_id:str}/events"
    tags = ["transactions"]  # noqa: RUF012 -- Litestar's declared attribute type is a list

    @get(
        summary="Live progress: Server-Sent Events",
        description=(
            "`text/event-stream`: `status` (each status change, the current one first), "
            "`progress` (as `GET .../status`, when it changes, at most about twice a "
            "second) and `end` once the transaction is COMPLETED, FAILED or CANCELLED; the "
            "stream closes after `end`. Authenticated with the `Authorization` header."
        ),
        media_type="text/event-stream",
        responses=error_responses(Code.VALIDATION_ERROR, Code.TRANSACTION_NOT_FOUND),
    )
    async def stream_events(
        self, transaction_id: FromPath[str], deps: Deps, tenant: Tenant
    ) -> ServerSentEvent:
        tx = await own_transaction(deps, tenant, transaction_id)
        return ServerSentEvent(
            transaction_events(deps.store, deps.broker, tx),
            retry_duration=_RETRY_MS,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
