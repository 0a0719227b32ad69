"""The allowed status changes (ARCHITECTURE §1) and the one way to make them.

Every change is a conditional update on the expected current status: a change whose
precondition no longer holds (another replica got there first, the transaction was
cancelled) matches nothing and changes nothing.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
from pymongo import UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession

from shared.broker import Broker
from shared.documents import StatusEntry, Transaction, from_document, to_document
from shared.errors import TransitionNotAllowed
from shared.events import TxStatusChanged
from shared.message_ranges import update_messages
from shared.metrics import TX_PROCESSING_SECONDS, TX_STATUS_CHANGES, TX_STATUS_SECONDS
from shared.status import MessageStatus as M
from shared.status import TxStatus as T
from shared.store import Store
from shared.topology import Subjects

__all__ = [
    "MESSAGE_TRANSITIONS",
    "TX_TRANSITIONS",
    "MessageChange",
    "Move",
    "check_message_transition",
    "check_tx_transition",
    "move_groups",
    "move_message",
    "move_messages",
    "processing_started",
    "publish_status",
    "transition_tx",
]

_ABANDON = frozenset({T.FAILED, T.CANCELLED})

TX_TRANSITIONS: Mapping[T, frozenset[T]] = {
    T.ACCEPT: frozenset({T.PROCESSING}) | _ABANDON,
    T.PROCESSING: frozenset({T.SCHEDULED, T.READY_TO_SEND}) | _ABANDON,
    T.SCHEDULED: frozenset({T.READY_TO_SEND}) | _ABANDON,
    T.READY_TO_SEND: frozenset({T.SENT}) | _ABANDON,
    T.SENT: frozenset({T.COMPLETED}) | _ABANDON,
    T.COMPLETED: frozenset(),
    T.FAILED: frozenset(),
    T.CANCELLED: frozenset(),
}

# SES events can overtake the sender's own record of a send, so outcomes are allowed
# from SENDING as well as from SENT.
_OUTCOMES = frozenset({M.DELIVERED, M.BOUNCED, M.COMPLAINED, M.FAILED})

MESSAGE_TRANSITIONS: Mapping[M, frozenset[M]] = {
    M.SCHEDULED: frozenset({M.READY_TO_SEND, M.SENDING, M.SUPPRESSED, M.CANCELLED}),
    M.READY_TO_SEND: frozenset({M.SENDING, M.SUPPRESSED, M.CANCELLED}),
    M.SENDING: frozenset({M.SENT, M.READY_TO_SEND}) | _OUTCOMES,
    M.SENT: _OUTCOMES | {M.EXPIRED},
    # A complaint, or a bounce the receiving server sent after accepting the mail.
    M.DELIVERED: frozenset({M.COMPLAINED, M.BOUNCED}),
    M.BOUNCED: frozenset(),
    M.COMPLAINED: frozenset(),
    M.FAILED: frozenset(),
    M.SUPPRESSED: frozenset(),
    M.EXPIRED: frozenset(),
    M.CANCELLED: frozenset(),
}


def check_tx_transition(old: T, new: T) -> None:
    if new not in TX_TRANSITIONS[old]:
        raise TransitionNotAllowed(f"transaction {old} -> {new} is not allowed")


def check_message_transition(old: M, new: M) -> None:
    if new not in MESSAGE_TRANSITIONS[old]:
        raise TransitionNotAllowed(f"message {old} -> {new} is not allowed")


async def transition_tx(
    store: Store,
    broker: Broker,
    tx: Transaction,
    new: T,
    *,
    metadata: Mapping[str, Any] | None = None,
    also_set: Mapping[str, Any] | None = None,
) -> bool:
    """Move a transaction from the status it was read in to ``new`` and announce it on
    ``email.tx.status.<new>``.

    Returns False when the transaction is no longer in that status. If it is already in
    ``new`` (this very change was made before a crash cut off its announcement) the
    announcement goes out again; its ``Nats-Msg-Id`` lets the stream drop a duplicate.
    """
    old = tx.status
    check_tx_transition(old, new)
    now = datetime.now(UTC)
    entry = StatusEntry(status=new, at=now, metadata=dict(metadata or {}))
    result = await store.transactions.update_one(
        {"_id": tx.id, "status": old},
        {
            "$set": {"status": new, "updated_at": now, **(also_set or {})},
            "$push": {"status_history": to_document(entry)},
        },
    )
    if result.matched_count == 1:
        _count_transition(tx, new, now)
        await publish_status(broker, tx.id, tx.tenant, old, entry)
        return True
    raw = await store.transactions.find_one({"_id": tx.id})
    if raw is not None:
        current = from_document(raw, Transaction)
        last = current.status_history[-1] if current.status_history else None
        if current.status == new and last is not None and last.status == new:
            await publish_status(broker, tx.id, tx.tenant, old, last)
    return False


def _count_transition(tx: Transaction, new: T, now: datetime) -> None:
    """The metrics of a change made: counted by the status entered; the time spent in the
    status left, from the history entry that entered it (the last one, as read); on
    COMPLETED, the whole processing time."""
    TX_STATUS_CHANGES.labels(new).inc()
    entered = tx.status_history[-1] if tx.status_history else None
    if entered is not None and entered.status == tx.status:
        TX_STATUS_SECONDS.labels(tx.status).observe(max(0.0, (now - entered.at).total_seconds()))
    started = (
        processing_started(((e.status, e.at) for e in tx.status_history), tx.created_at)
        if new == T.COMPLETED
        else None
    )
    if started is not None:
        TX_PROCESSING_SECONDS.observe(max(0.0, (now - started).total_seconds()))


def processing_started(
    history: Iterable[tuple[str, datetime]], created_at: datetime
) -> datetime | None:
    """When a transaction's processing clock started, from its status history as (status,
    at): acceptance, or for a scheduled campaign its release (READY_TO_SEND after SCHEDULED;
    None until then): a campaign waiting for next week is not slow. The processing-time
    histogram and the tracker's slow_processing rule both measure from here."""
    scheduled = False
    for status, at in history:
        if status == T.SCHEDULED:
            scheduled = True
        elif scheduled and status == T.READY_TO_SEND:
            return at
    return None if scheduled else created_at


async def publish_status(
    broker: Broker, transaction_id: str, tenant: str, old: T | None, entry: StatusEntry
) -> None:
    event = TxStatusChanged(
        transaction_id=transaction_id,
        tenant=tenant,
        old_status=old,
        new_status=entry.status,
        timestamp=entry.at,
        metadata=entry.metadata,
    )
    await broker.publish(
        Subjects.tx_status(entry.status),
        event,
        msg_id=f"{transaction_id}:status:{entry.status}",
    )


async def move_message(
    store: Store,
    message_id: str,
    candidates: Sequence[M],
    new: M,
    *,
    also_set: Mapping[str, Any] | None = None,
    event: Mapping[str, Any] | None = None,
    guard: Mapping[str, Any] | None = None,
) -> M | None:
    """Move one message to ``new`` from the first of ``candidates`` it is in.

    Returns the status it moved from (so the caller can keep the per-status counters
    exact) or None when it was in none of them.
    """
    for old in candidates:
        check_message_transition(old, new)
    tried: set[M | None] = set()
    now = datetime.now(UTC)
    update: dict[str, Any] = {"$set": {"status": new, "updated_at": now, **(also_set or {})}}
    if event is not None:
        update["$push"] = {"events": dict(event)}
    remaining = list(candidates)
    while remaining:
        for old in remaining:
            result = await store.messages.update_one(
                {"_id": message_id, "status": old, **(guard or {})}, update
            )
            if result.matched_count == 1:
                return old
        # Another writer may have moved the message between two of our tries (SENDING ->
        # SENT while we tried SENT, then SENDING): if it now is in a candidate status we
        # have not seen it in, try that one.
        raw = await store.messages.find_one({"_id": message_id}, {"status": 1})
        current = next((c for c in candidates if raw is not None and raw["status"] == c), None)
        remaining = [current] if current is not None and current not in tried else []
        tried.add(current)
    return None


async def move_messages(
    store: Store,
    transaction_id: str,
    ids: Sequence[str],
    old: M,
    new: M,
    *,
    also_set: Mapping[str, Any] | None = None,
    message_inc: Mapping[str, int] | None = None,
    guard: Mapping[str, Any] | None = None,
    tx_guard: Mapping[str, Any] | None = None,
    each: Mapping[str, MessageChange] | None = None,
) -> int:
    """Move every message of ``ids`` that is in ``old`` to ``new``, and the transaction's
    counters with them, in one store transaction; returns how many moved.

    The counters' ``$inc`` and the messages' ``update_many`` (one per run of rows, or per
    piece of ``MAX_IN`` ids: shared/message_ranges.py) commit together, so a crash can
    never leave the counters off. The counters go first, by the number of ids, and are
    corrected after the update if fewer moved: every mover of a transaction's messages
    writes that one document, and writing it first makes a conflict show at once, before
    the costly update, to the later writer, who backs off and tries again. Written last,
    a long move conflicted at its end with every short one committed meanwhile, and was
    retried until its time ran out (the tracker behind the sender at 100,000 recipients;
    at 10,000, COMPLETED 55 s -> 43 s).
    ``message_inc`` increments fields of each message moved (``{"attempts": 1}``);
    ``tx_guard`` is a condition on the transaction (``{"cancel_requested_at": None}``):
    when it does not hold, nothing moves.
    ``each`` adds a change of its own to each message of ``ids`` (the tracker's events):
    the messages are then updated one by one, in one ``bulk_write``, each only where its
    own condition holds as well, so the one write that moves a message makes its change.
    The store writes a message once then, not twice: on SecantusDB a move and an events
    ``$push`` apart cost 2.07 ms a message, together 1.47 ms (``bench.tracker_writes``).
    """
    move = Move(ids=list(ids), old=old, new=new, each=None if each is None else dict(each))
    (moved,) = await move_groups(
        store,
        transaction_id,
        [move],
        also_set=also_set,
        message_inc=message_inc,
        guard=guard,
        tx_guard=tx_guard,
    )
    return moved


class Move(msgspec.Struct, frozen=True, kw_only=True):
    """One group of ``move_groups``: the messages of ``ids`` in ``old`` to ``new``, each
    with its own ``each`` change if given (see ``move_messages``)."""

    ids: list[str]
    old: M
    new: M
    each: dict[str, MessageChange] | None = None


async def move_groups(
    store: Store,
    transaction_id: str,
    moves: Sequence[Move],
    *,
    also_set: Mapping[str, Any] | None = None,
    message_inc: Mapping[str, int] | None = None,
    guard: Mapping[str, Any] | None = None,
    tx_guard: Mapping[str, Any] | None = None,
) -> list[int]:
    """``move_messages`` of several groups of one transaction's messages (the tracker's
    batch: some SENT -> DELIVERED, some SENDING -> DELIVERED, a few BOUNCED) in one store
    transaction, with one write of the counters for all of them; how many of each moved.
    Each store transaction on a campaign's counters may meet another mover's, so one for
    the batch is fewer conflicts, retries and round trips than one per group."""
    for move in moves:
        check_message_transition(move.old, move.new)
    if not any(move.ids for move in moves):
        return [0] * len(moves)
    now = datetime.now(UTC)
    counters = {"_id": transaction_id, **(tx_guard or {})}

    def update(new: M) -> dict[str, Any]:
        moving: dict[str, Any] = {"$set": {"status": new, "updated_at": now, **(also_set or {})}}
        if message_inc:
            moving["$inc"] = dict(message_inc)
        return moving

    tries = 0

    async def apply(session: AsyncClientSession) -> list[int]:
        nonlocal tries
        # Run again: the counters' write met another mover's store transaction, which
        # holds them for up to a second. pymongo's own backoff (5 ms, growing by half)
        # would ask a dozen times meanwhile, each a failed write and an abort.
        await asyncio.sleep(_RETRY_WAITS[min(tries, len(_RETRY_WAITS) - 1)])
        tries += 1
        asked = _deltas((move.old, move.new, len(move.ids)) for move in moves)
        counted = await store.transactions.update_one(counters, asked, session=session)
        if counted.matched_count == 0:
            raise _Refused  # aborts the store transaction: the messages stay
        moved = [
            await _move_group(
                store, move, {"status": move.old, **(guard or {})}, update(move.new), session
            )
            for move in moves
        ]
        short = [(m.old, m.new, n - len(m.ids)) for m, n in zip(moves, moved, strict=True)]
        if any(n for _, _, n in short):
            await store.transactions.update_one(
                {"_id": transaction_id}, _deltas(short), session=session
            )
        return moved

    async with store.client.start_session() as session:
        try:
            result: list[int] = await session.with_transaction(apply)
        except _Refused:
            return [0] * len(moves)
    return result


async def _move_group(
    store: Store,
    move: Move,
    query: dict[str, Any],
    update: dict[str, Any],
    session: AsyncClientSession,
) -> int:
    if not move.ids:
        return 0
    if move.each is None:
        return await update_messages(store.messages, move.ids, query, update, session=session)
    changes = move.each
    one_by_one = [_with_change(i, query, update, changes[i]) for i in move.ids]
    result = await store.messages.bulk_write(one_by_one, ordered=False, session=session)
    return result.modified_count


def _deltas(moves: Iterable[tuple[M, M, int]]) -> dict[str, Any]:
    """The counters' ``$inc`` for ``n`` messages from ``old`` to ``new``, for each move."""
    by_status: Counter[str] = Counter()
    for old, new, n in moves:
        by_status[f"counters.{old.lower()}"] -= n
        by_status[f"counters.{new.lower()}"] += n
    return {"$inc": dict(by_status)}


# Seconds before each run of a move's store transaction, the first run and the retries.
_RETRY_WAITS: Final = (0.0, 0.02, 0.05, 0.1, 0.2, 0.4)


class _Refused(Exception):
    """The transaction's guard did not hold."""


class MessageChange(msgspec.Struct, frozen=True):
    """What ``move_messages(each=...)`` adds for one message: a condition, and update
    operators other than the move's ``$set`` and ``$inc``."""

    query: dict[str, Any]
    update: dict[str, Any]


def _with_change(
    message_id: str, query: Mapping[str, Any], update: Mapping[str, Any], change: MessageChange
) -> UpdateOne:
    return UpdateOne({"_id": message_id, **query, **change.query}, {**update, **change.update})
