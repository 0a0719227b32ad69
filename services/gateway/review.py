"""Manual review of dead letters: read them, put their work back, or set them aside.

A letter is open until an operator retries or discards it, once: each is a conditional
update (``state: open``), so two operators cannot both win, and each is appended to the
letter's ``history`` with who and when. Nothing is ever deleted.

Retrying puts the work back where it came from:

    job       its payload, byte for byte, republished to its original subject with
              ``Nats-Msg-Id`` ``<letter>:retry:<n>`` (the original's id would be dropped as
              a duplicate); the consumer that gave up on it takes it again
    callback  a replay of the callback (``shared.callback_outbox.request_replay``): sent
              again now, with its retries counted afresh
    message   not retried on its own (409 ``DEAD_LETTER_NOT_RETRYABLE``): its transaction
              has moved on (SENT, COMPLETED) and a FAILED message is final; retry-failed
              resends a COMPLETED transaction's FAILED messages as a new transaction

The letter is marked retried before the work is handed over; if the handing over fails
(NATS or the store away: 503), the letter is opened again with a ``retry_failed`` entry.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from services.gateway.errors import ApiError, Code
from services.gateway.records import page_newest, utc_now
from shared.broker import Broker
from shared.callback_outbox import announce_due, request_replay
from shared.documents import (
    CallbackDelivery,
    DeadLetter,
    DeadLetterEntry,
    Operator,
    from_document,
    to_document,
)
from shared.errors import RetryableError
from shared.status import DeadLetterState
from shared.store import Store, store_reachable

__all__ = [
    "LetterKind",
    "discard_letter",
    "find_letter",
    "letter_kind",
    "letters_of_transaction",
    "page_letters",
    "retry_letter",
]

# The most of a transaction's letters its audit trail shows (one per failed recipient).
_MAX_OF_TRANSACTION: Final = 200


class LetterKind(StrEnum):
    """What a letter holds, as the review sees it (``DeadLetter.kind`` and ``service``)."""

    INGEST_JOB = "ingest_job"  # a submission's file ingest could not read: email.tx.accepted
    SEND_BATCH = "send_batch"  # a send batch the sender gave up on
    SCHEDULE_JOB = "schedule_job"  # the scheduler's work: ingested, due, cancel/reschedule
    EVENT = "event"  # the tracker's: SES events, status events, expiries, callback work
    JOB = "job"  # any NATS message (the five above are all jobs)
    CALLBACK = "callback"  # a callback whose retries all failed
    MESSAGE = "message"  # one recipient out of send retries


_JOB_OF_SERVICE: Final = {
    "ingest": LetterKind.INGEST_JOB,
    "sender": LetterKind.SEND_BATCH,
    "scheduler": LetterKind.SCHEDULE_JOB,
    "tracker": LetterKind.EVENT,
}
_FILTERS: Final[dict[LetterKind, dict[str, str]]] = {
    **{kind: {"kind": "job", "service": service} for service, kind in _JOB_OF_SERVICE.items()},
    LetterKind.JOB: {"kind": "job"},
    LetterKind.CALLBACK: {"kind": "callback"},
    LetterKind.MESSAGE: {"kind": "message"},
}


def letter_kind(letter: DeadLetter) -> LetterKind:
    if letter.kind == "job":
        return _JOB_OF_SERVICE.get(letter.service, LetterKind.JOB)
    return LetterKind(letter.kind)


async def page_letters(
    store: Store,
    *,
    tenant: str | None,
    kind: LetterKind | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[DeadLetter]:
    """Up to ``limit`` letters of ``tenant`` (None: every letter, the operator's view),
    newest first by (at, _id), after ``after``."""
    query = dict(_FILTERS[kind]) if kind is not None else {}
    if tenant is not None:
        query["tenant"] = tenant
    found = await page_newest(
        store.dead_letters,
        query,
        field="at",
        after=after,
        limit=limit,
        what="list dead letters",
    )
    return [from_document(raw, DeadLetter) for raw in found]


async def find_letter(store: Store, tenant: str | None, letter_id: str) -> DeadLetter:
    """The letter, if ``tenant``'s (None: any); another tenant's answers as a missing one."""
    query: dict[str, Any] = {"_id": letter_id}
    if tenant is not None:
        query["tenant"] = tenant
    with store_reachable("find dead letter"):
        raw = await store.dead_letters.find_one(query)
    if raw is None:
        raise ApiError(
            Code.DEAD_LETTER_NOT_FOUND,
            f"no dead letter {letter_id!r}",
            details={"dead_letter_id": letter_id},
        )
    return from_document(raw, DeadLetter)


async def letters_of_transaction(store: Store, transaction_id: str) -> list[DeadLetter]:
    """The transaction's letters (``transaction_id`` set), oldest first, at most 200."""
    with store_reachable("read dead letters"):
        found = (
            await store.dead_letters.find({"transaction_id": transaction_id})
            .sort([("at", 1), ("_id", 1)])
            .to_list(_MAX_OF_TRANSACTION)
        )
    return [from_document(raw, DeadLetter) for raw in found]


async def retry_letter(
    store: Store, broker: Broker, letter: DeadLetter, who: Operator
) -> DeadLetter:
    """Put the letter's work back (see the module's table); the letter as now."""
    _check_open(letter)
    if letter.kind == "message":
        transaction = letter.transaction_id or ""
        raise ApiError(
            Code.DEAD_LETTER_NOT_RETRYABLE,
            "a message letter is not retried on its own: retry-failed resends its "
            "transaction's FAILED messages once the transaction is COMPLETED",
            details={
                "dead_letter_id": letter.id,
                "transaction_id": letter.transaction_id,
                "retry_with": f"/api/v1/transactions/{transaction}/retry-failed",
            },
        )
    # Retries handed over before (none while only an open letter can be retried); a retry
    # whose hand-over failed reuses its id, so a publish that did land is not made twice.
    done = sum(e.action == "retried" for e in letter.history)
    attempt = 1 + done - sum(e.action == "retry_failed" for e in letter.history)
    details = await _retry_details(store, letter, attempt)
    claimed = await _close(store, letter, DeadLetterState.RETRIED, "retried", who, details)
    try:
        await _hand_over(store, broker, letter, details)
    except RetryableError as e:
        await _reopen(store, letter, who, str(e))
        raise
    return claimed


async def discard_letter(store: Store, letter: DeadLetter, who: Operator) -> DeadLetter:
    """Set the letter aside for good: kept, marked discarded."""
    _check_open(letter)
    return await _close(store, letter, DeadLetterState.DISCARDED, "discarded", who, {})


def _check_open(letter: DeadLetter) -> None:
    if letter.state is not DeadLetterState.OPEN:
        last = letter.history[-1] if letter.history else None
        raise ApiError(
            Code.DEAD_LETTER_CLOSED,
            f"the dead letter was already {letter.state}",
            details={
                "dead_letter_id": letter.id,
                "state": letter.state,
                "at": None if last is None else last.at.isoformat(),
                "by": None if last is None else last.who.key_prefix,
            },
        )


async def _retry_details(store: Store, letter: DeadLetter, attempt: int) -> dict[str, Any]:
    if letter.kind == "callback":
        callback_id = letter.message_id or ""
        with store_reachable("find callback"):
            found = await store.callbacks.find_one({"_id": callback_id}, {"_id": 1})
        if found is None:
            raise ApiError(
                Code.DEAD_LETTER_NOT_RETRYABLE,
                f"the callback {callback_id!r} of this letter is gone",
                details={"dead_letter_id": letter.id, "callback_id": callback_id},
            )
        return {"callback_id": callback_id}
    return {"subject": letter.subject, "msg_id": f"{letter.id}:retry:{attempt}"}


async def _hand_over(
    store: Store, broker: Broker, letter: DeadLetter, details: dict[str, Any]
) -> None:
    if letter.kind == "callback":
        with store_reachable("find callback"):
            raw = await store.callbacks.find_one({"_id": details["callback_id"]})
        assert raw is not None  # checked before the claim; callbacks are never deleted
        delivery = from_document(raw, CallbackDelivery)
        await request_replay(store, delivery, utc_now())
        await announce_due(broker, delivery.transaction_id)
        return
    await broker.publish_raw(
        letter.subject, letter.payload.encode("utf-8"), msg_id=details["msg_id"]
    )


async def _close(
    store: Store,
    letter: DeadLetter,
    state: DeadLetterState,
    action: str,
    who: Operator,
    details: dict[str, Any],
) -> DeadLetter:
    """open -> ``state``, if it still is open; else 409 with who closed it."""
    entry = DeadLetterEntry(action=action, at=utc_now(), who=who, details=details)
    with store_reachable("update dead letter"):
        result = await store.dead_letters.update_one(
            {"_id": letter.id, "state": DeadLetterState.OPEN},
            {"$set": {"state": state}, "$push": {"history": to_document(entry)}},
        )
    if result.matched_count == 0:
        _check_open(await find_letter(store, None, letter.id))
        # Open again already (a retry that failed in between): not ours to guess; repeat.
        raise ApiError(
            Code.DEAD_LETTER_CLOSED,
            "the dead letter changed meanwhile; read it and try again",
            details={"dead_letter_id": letter.id},
        )
    return await find_letter(store, None, letter.id)


async def _reopen(store: Store, letter: DeadLetter, who: Operator, error: str) -> None:
    entry = DeadLetterEntry(action="retry_failed", at=utc_now(), who=who, details={"error": error})
    with store_reachable("reopen dead letter"):
        await store.dead_letters.update_one(
            {"_id": letter.id, "state": DeadLetterState.RETRIED},
            {"$set": {"state": DeadLetterState.OPEN}, "$push": {"history": to_document(entry)}},
        )
