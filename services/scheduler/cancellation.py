"""Cancelling what still waits in a transaction the client asked to cancel.

Its pending schedules are purged (the subject ``email.schedule.<tx>.>``), then, batch by
batch, every message still SCHEDULED or READY_TO_SEND moves to CANCELLED with the counters
(``move_messages``: one store transaction per batch and status). Messages a sender holds
(SENDING) are left to it: it settles them, then calls ``settle``, which ends the transaction
in CANCELLED once nothing is pending. A schedule that fired before the purge finds the
cancellation and does nothing; a slot released at the same time as the cancel loses no
message to it: whichever moves a message first wins, and the other one skips it.

Repeating it is harmless: nothing moves twice. While ingest is still reading the file there
is nothing to cancel yet; the scheduler comes back here when ingest hands it over.
"""

from __future__ import annotations

import structlog

from services.scheduler.slots import batches_of, purge_schedules
from shared.broker import Broker
from shared.documents import Transaction, message_id
from shared.outcomes import announce_moved
from shared.schedule import IMMEDIATE
from shared.settlement import settle
from shared.status import MessageStatus as M
from shared.store import Store
from shared.transitions import move_messages

__all__ = ["cancel_waiting"]

log = structlog.get_logger("scheduler")


async def cancel_waiting(store: Store, broker: Broker, tx: Transaction) -> int:
    """Cancel every waiting message of ``tx`` and settle it; returns how many moved."""
    if tx.cancel_requested_at is None:
        log.warning("cancel not requested", status=tx.status)
        return 0
    await purge_schedules(broker, tx.id)
    if "total" not in tx.counters:
        log.info("cancel waits for ingest", status=tx.status)
        return 0
    moved = 0
    for group in await batches_of(store, tx.id, list(range(tx.batches))):
        for batch in group:
            ids = [message_id(tx.id, row) for row in batch.rows]
            # A batch of rows due at once never had a SCHEDULED message.
            waiting = (
                (M.READY_TO_SEND,) if batch.slot == IMMEDIATE else (M.SCHEDULED, M.READY_TO_SEND)
            )
            in_batch = 0
            for old in waiting:
                in_batch += await move_messages(store, tx.id, ids, old, M.CANCELLED)
            await announce_moved(store, broker, tx.id, tx.tenant, M.CANCELLED, ids, in_batch)
            moved += in_batch
    settled = await settle(store, broker, tx.id)
    log.info("cancelled waiting messages", moved=moved, settled=settled)
    return moved
