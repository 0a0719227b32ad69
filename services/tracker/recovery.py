"""Stuck transactions, recovered (GOV.UK Notify restarts its stuck jobs every minute).

A transaction stays in ACCEPT when the gateway recorded it but its ``email.tx.accepted``
never reached the stream, and in PROCESSING when ingest died and JetStream's redeliveries
of its job ran out. Either way nothing would ever move it again. So, each round of the
tracker's ``AlertWorker``, one in ACCEPT or PROCESSING with no change, no ingest progress
and no recovery for ``recover_after_seconds`` is announced to ingest again: a new
``TxAccepted`` with the id ``<tx>:recover:<n>``, which the stream does not take for the
original. Ingest picks it up where it stands: ACCEPT starts the file; PROCESSING reads it
again and writes only what is missing (message, batch and row-error ids come from row
numbers, and batches known complete are skipped: services/ingest/ingestion.py).

The attempt is claimed first, by a conditional ``$inc`` of ``recoveries`` on the count read,
so two tracker replicas never announce the same attempt. After ``recover_max_attempts``
the transaction FAILS with ``failure.code`` ``STUCK_NOT_RECOVERED`` (and the
``stuck_not_recovered`` alert fires); the batches a dead ingest had written are removed by
ingest, as for any file that fails (it is told once more, with ``batches`` set).

``recover_after_seconds`` must be longer than a transaction may wait in the ingest queue:
an announcement of one still waiting there makes ingest read its file twice (harmlessly,
but for nothing).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog

from shared.broker import Broker
from shared.documents import Transaction, from_document
from shared.events import TxAccepted
from shared.status import TxStatus
from shared.store import Store
from shared.topology import Subjects
from shared.transitions import transition_tx

__all__ = ["NOT_RECOVERED", "recover_stuck"]

log = structlog.get_logger("tracker.recovery")

NOT_RECOVERED = "STUCK_NOT_RECOVERED"
# Transactions looked at per status and round, oldest first; batch ids probed per query.
_PER_ROUND = 100
_PROBE = 100


async def recover_stuck(
    store: Store, broker: Broker, *, now: datetime, after: timedelta, max_attempts: int
) -> int:
    """One round; returns how many transactions were announced again or failed."""
    cutoff = now - after
    acted = 0
    for status in (TxStatus.ACCEPT, TxStatus.PROCESSING):
        found = store.transactions.find({"status": status, "updated_at": {"$lt": cutoff}})
        candidates = [from_document(doc, Transaction) async for doc in found.limit(_PER_ROUND)]
        for tx in candidates:
            if _last_sign_of_life(tx) >= cutoff:
                continue
            if tx.recoveries >= max_attempts:
                acted += await _give_up(store, broker, tx)
            else:
                acted += await _announce_again(store, broker, tx, now)
    return acted


def _last_sign_of_life(tx: Transaction) -> datetime:
    return max(t for t in (tx.updated_at, tx.recovered_at, tx.ingest_progress_at) if t)


async def _announce_again(store: Store, broker: Broker, tx: Transaction, now: datetime) -> int:
    attempt = tx.recoveries + 1
    # Never recovered: the field is absent (an omitted default), which ``None`` matches.
    read: object = tx.recoveries if tx.recoveries else {"$in": [0, None]}
    claimed = await store.transactions.update_one(
        {"_id": tx.id, "status": tx.status, "recoveries": read},
        {"$set": {"recoveries": attempt, "recovered_at": now}},
    )
    if claimed.matched_count == 0:
        return 0  # another replica took this attempt, or the transaction moved
    await broker.publish(
        Subjects.TX_ACCEPTED,
        TxAccepted(transaction_id=tx.id),
        msg_id=f"{tx.id}:recover:{attempt}",
    )
    log.warning(
        "stuck transaction announced again",
        transaction_id=tx.id,
        status=tx.status,
        attempt=attempt,
        unchanged_since=_last_sign_of_life(tx),
    )
    return 1


async def _give_up(store: Store, broker: Broker, tx: Transaction) -> int:
    written = await _written_batches(store, tx.id) if tx.status == TxStatus.PROCESSING else 0
    failure = {
        "code": NOT_RECOVERED,
        "message": (
            f"stuck in {tx.status} and not moved by {tx.recoveries} recovery attempt(s); "
            "submit the campaign again"
        ),
        "details": {"status": tx.status, "recoveries": tx.recoveries},
    }
    failed = await transition_tx(
        store,
        broker,
        tx,
        TxStatus.FAILED,
        metadata={"code": NOT_RECOVERED, "recoveries": tx.recoveries},
        also_set={"failure": failure, "batches": written},
    )
    if not failed:
        return 0
    log.error("stuck transaction failed", transaction_id=tx.id, status=tx.status, batches=written)
    if written:
        # Ingest removes what a failed file left (its messages and batches), as always.
        await broker.publish(
            Subjects.TX_ACCEPTED,
            TxAccepted(transaction_id=tx.id),
            msg_id=f"{tx.id}:recover:rollback",
        )
    return 1


async def _written_batches(store: Store, transaction_id: str) -> int:
    """How many batch documents ingest wrote: their numbers run from 0 without a gap."""
    count = 0
    while True:
        ids = [f"{transaction_id}:{n}" for n in range(count, count + _PROBE)]
        numbers = [
            int(doc["number"])
            async for doc in store.batches.find({"_id": {"$in": ids}}, {"number": 1})
        ]
        if not numbers:
            return count
        count = max(numbers) + 1
