"""Message outcomes announced on ``email.msg.status.<STATUS>``, for other systems.

One event per (transaction, status) and batch of moves, never one per recipient. The
``Nats-Msg-Id`` is made from the messages it names, so the same moves announced twice
within the stream's duplicate window are stored once.

An outcome is announced after its move is stored: a crash between the two loses the
announcement, never the outcome (``GET .../messages`` and the counters have it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from shared.broker import Broker
from shared.events import MessageOutcome, MessageOutcomes
from shared.message_ranges import find_messages
from shared.status import MessageStatus
from shared.store import Store
from shared.topology import Subjects

__all__ = ["announce_moved", "publish_outcomes"]


async def publish_outcomes(
    broker: Broker,
    transaction_id: str,
    tenant: str,
    status: MessageStatus,
    messages: Sequence[MessageOutcome],
) -> None:
    if not messages:
        return
    ids = sorted(m.message_id for m in messages)
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:32]
    event = MessageOutcomes(
        transaction_id=transaction_id,
        tenant=tenant,
        status=status,
        timestamp=datetime.now(UTC),
        messages=sorted(messages, key=lambda m: m.row),
    )
    await broker.publish(
        Subjects.msg_status(status), event, msg_id=f"{transaction_id}:msg:{status}:{digest}"
    )


async def announce_moved(
    store: Store,
    broker: Broker,
    transaction_id: str,
    tenant: str,
    status: MessageStatus,
    ids: Sequence[str],
    moved: int,
    known: Mapping[str, MessageOutcome] | None = None,
) -> None:
    """Announce the messages of ``ids`` that a move to ``status`` just moved (``moved`` of
    them). When all moved and ``known`` has them, nothing is read; otherwise the messages
    now in ``status`` are read (another writer may have moved some: announcing one twice
    is harmless, missing one is not)."""
    if moved == 0:
        return
    if moved == len(ids) and known is not None and all(i in known for i in ids):
        outcomes = [known[i] for i in ids]
    else:
        found = find_messages(
            store.messages, ids, {"status": status}, {"_id": 1, "row": 1, "email": 1}
        )
        outcomes = [
            MessageOutcome(message_id=str(raw["_id"]), row=int(raw["row"]), email=raw["email"])
            async for raw in found
        ]
    await publish_outcomes(broker, transaction_id, tenant, status, outcomes)
