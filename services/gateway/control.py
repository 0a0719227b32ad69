"""Cancelling and rescheduling a transaction: recorded here, carried out by the scheduler.

Each request is first recorded on the transaction with a conditional update -- so two
requests, or a request and the transaction's own progress, cannot both win -- and then
handed to the scheduler on ``email.tx.control`` (``TxControl``). A request recorded but not
handed over (NATS unavailable: 503) is handed over again when the client repeats it.

Cancel: any transaction not yet SENT nor final. The scheduler purges its pending schedules
and moves every message still waiting (SCHEDULED, READY_TO_SEND) to CANCELLED;
``shared.settlement.settle`` ends the transaction in CANCELLED once nothing is being sent.
Asking again while that happens is answered like the first time.

Reschedule: only a SCHEDULED transaction (no slot has fired) that is not being cancelled.
The new ``send_at`` is when its first slot fires; every slot moves by the same amount, so
per-row times keep their spacing (recipients' own "09:00" all move together). The limits
are a submission's: ``send_at`` at most 5 minutes back (then: now) and the last slot at most
``max_schedule_days`` ahead. Messages keep the ``send_at`` their file gave them; the
transaction's ``send_at`` becomes the new time and ``schedule.shift_seconds`` says how far
its slots moved.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

from services.gateway.errors import ApiError, Code
from services.gateway.records import (
    find_transaction,
    mark_cancel_requested,
    shift_schedule,
    utc_now,
)
from shared.broker import Broker
from shared.documents import Transaction
from shared.errors import BrokerUnavailable
from shared.events import ControlAction, TxControl
from shared.log import get_logger
from shared.schedule import SendAtProblem, check_send_at, shifted
from shared.status import TxStatus
from shared.store import Store
from shared.topology import Subjects

__all__ = ["CANCELLABLE", "request_cancel", "request_reschedule"]

log = get_logger("gateway.control")

CANCELLABLE: Final = frozenset(
    {TxStatus.ACCEPT, TxStatus.PROCESSING, TxStatus.SCHEDULED, TxStatus.READY_TO_SEND}
)


async def request_cancel(store: Store, broker: Broker, tx: Transaction) -> Transaction:
    """Record the cancellation of ``tx`` and ask the scheduler; the transaction as now."""
    if not await mark_cancel_requested(store, tx.tenant, tx.id, CANCELLABLE, utc_now()):
        current = await _reload(store, tx)
        if current.status not in CANCELLABLE or current.cancel_requested_at is None:
            raise ApiError(
                Code.TX_NOT_CANCELLABLE,
                f"a {current.status} transaction cannot be cancelled",
                details={"transaction_id": tx.id, "status": current.status},
            )
        # Asked before: ask the scheduler again (it may not have heard).
    await _ask(broker, TxControl(transaction_id=tx.id, action=ControlAction.CANCEL), "cancel")
    log.info("cancel requested", status=tx.status)
    return await _reload(store, tx)


async def request_reschedule(
    store: Store, broker: Broker, tx: Transaction, send_at: datetime, max_days: int
) -> Transaction:
    """Move every slot of ``tx`` so that the first fires at ``send_at`` (the caller checked
    it is within the limits) and ask the scheduler; the transaction as now."""
    schedule = tx.schedule
    if (
        tx.status != TxStatus.SCHEDULED
        or tx.cancel_requested_at is not None
        or schedule is None
        or schedule.first_at is None
        or schedule.last_at is None
    ):
        raise _not_reschedulable(tx)
    now = utc_now()
    shift = (send_at - schedule.first_at).total_seconds()
    last = shifted(schedule.last_at, shift)
    if check_send_at(last, now, max_days) is SendAtProblem.TOO_FAR:
        raise ApiError(
            Code.SEND_AT_TOO_FAR,
            f"the transaction's last slot would fire more than {max_days} days ahead, "
            f"at {last.isoformat()}",
            details={
                "field": "send_at",
                "value": send_at.isoformat(),
                "last_slot_at": last.isoformat(),
                "max_schedule_days": max_days,
            },
        )
    generation = schedule.generation + 1
    moved = await shift_schedule(
        store, tx, send_at=send_at, shift_seconds=shift, generation=generation, now=now
    )
    if not moved:
        raise _not_reschedulable(await _reload(store, tx))
    event = TxControl(transaction_id=tx.id, action=ControlAction.RESCHEDULE, generation=generation)
    await _ask(broker, event, f"reschedule:{generation}")
    log.info(
        "reschedule requested",
        send_at=send_at.isoformat(),
        shift=str(timedelta(seconds=shift)),
        generation=generation,
    )
    return await _reload(store, tx)


def _not_reschedulable(tx: Transaction) -> ApiError:
    reason = (
        "its cancellation was asked for"
        if tx.cancel_requested_at is not None
        else f"it is {tx.status}, not SCHEDULED"
    )
    return ApiError(
        Code.TX_NOT_RESCHEDULABLE,
        f"the transaction cannot be rescheduled: {reason}",
        details={"transaction_id": tx.id, "status": tx.status},
    )


async def _reload(store: Store, tx: Transaction) -> Transaction:
    current = await find_transaction(store, tx.tenant, tx.id)
    if current is None:  # never deleted; but do not pretend
        raise ApiError(
            Code.TRANSACTION_NOT_FOUND,
            f"no transaction {tx.id!r}",
            details={"transaction_id": tx.id},
        )
    return current


async def _ask(broker: Broker, event: TxControl, key: str) -> None:
    try:
        await broker.publish(Subjects.TX_CONTROL, event, msg_id=f"{event.transaction_id}:{key}")
    except BrokerUnavailable as e:
        log.warning("request recorded but not handed to the scheduler", error=str(e))
        raise ApiError(
            Code.SERVICE_UNAVAILABLE,
            "the request was recorded but could not be queued; repeat it",
            details={"transaction_id": event.transaction_id},
        ) from e
