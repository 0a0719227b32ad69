"""When the sending phase of a transaction is over: the one decision, made by whoever
moved its last waiting or in-flight message (the sender, the scheduler, a cancel).

SENT when no message waits for a slot, waits to be sent or is being sent (every one is
SENT, FAILED, SUPPRESSED, CANCELLED or already has its outcome); CANCELLED instead when the
client asked to cancel. Both are conditional transitions, so deciding twice changes nothing.
"""

from __future__ import annotations

from shared.broker import Broker
from shared.documents import Transaction
from shared.records import load_transaction
from shared.status import MessageStatus as M
from shared.status import TxStatus
from shared.store import Store
from shared.transitions import transition_tx

__all__ = ["PENDING_MESSAGE_STATUSES", "pending_messages", "settle", "settle_read"]

# Statuses of a message the sending phase still owes something.
PENDING_MESSAGE_STATUSES = (M.SCHEDULED, M.READY_TO_SEND, M.SENDING)

_OPEN = (TxStatus.PROCESSING, TxStatus.SCHEDULED, TxStatus.READY_TO_SEND)


def pending_messages(counters: dict[str, int]) -> int:
    return sum(counters.get(status.lower(), 0) for status in PENDING_MESSAGE_STATUSES)


async def settle(store: Store, broker: Broker, transaction_id: str) -> TxStatus | None:
    """Move the transaction to SENT or CANCELLED if its sending phase is over; returns the
    status it moved to, or None."""
    return await settle_read(store, broker, await load_transaction(store, transaction_id))


async def settle_read(store: Store, broker: Broker, tx: Transaction) -> TxStatus | None:
    """``settle`` on the transaction as the caller just read it."""
    if "total" not in tx.counters or pending_messages(tx.counters) > 0:
        return None
    if tx.cancel_requested_at is not None and tx.status in _OPEN:
        new = TxStatus.CANCELLED
    elif tx.status == TxStatus.READY_TO_SEND:
        new = TxStatus.SENT
    else:
        return None
    moved = await transition_tx(store, broker, tx, new)
    return new if moved else None
