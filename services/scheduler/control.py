"""A client's cancel or reschedule (``TxControl`` on ``email.tx.control``), carried out.

The gateway has recorded the request on the transaction before asking (see
services/gateway/control.py); this reads what to do from there.

Reschedule: the pending schedules are purged and published again at the slots' new times
(``Schedule.shift_seconds``) under the new generation, so a schedule of the old one that
fired meanwhile is stale; slots the move made due are released at once. A request of an
older generation than the transaction's is superseded by a newer one and does nothing.
Requests are handled one at a time (the consumer's ``max_ack_pending`` is 1): a purge and
its publishes are never interleaved with another request's.
"""

from __future__ import annotations

import structlog

from services.scheduler.cancellation import cancel_waiting
from services.scheduler.scheduling import plan
from services.scheduler.slots import generation, load_slots, purge_schedules
from shared.actor import Actor
from shared.broker import Broker
from shared.documents import Transaction
from shared.events import ControlAction, TxControl
from shared.records import load_transaction
from shared.status import TxStatus
from shared.store import Store
from shared.topology import CONSUMERS

__all__ = ["ControlActor", "reschedule"]

log = structlog.get_logger("scheduler")


async def reschedule(store: Store, broker: Broker, tx: Transaction, wanted: int) -> None:
    """Move the schedules of ``tx`` to its current shift, if ``wanted`` is its generation."""
    current = generation(tx)
    if (
        tx.cancel_requested_at is not None
        or tx.status not in (TxStatus.SCHEDULED, TxStatus.READY_TO_SEND)
        or current != wanted
    ):
        log.info("reschedule superseded", status=tx.status, wanted=wanted, current=current)
        return
    await purge_schedules(broker, tx.id)
    await plan(store, broker, tx, await load_slots(store, tx))


class ControlActor(Actor[TxControl]):
    spec = CONSUMERS.SCHEDULER_CONTROL
    event_type = TxControl

    def __init__(self, store: Store, broker: Broker) -> None:
        self.store = store
        self.broker = broker

    async def handle(self, event: TxControl) -> None:
        tx = await load_transaction(self.store, event.transaction_id)
        match event.action:
            case ControlAction.CANCEL:
                await cancel_waiting(self.store, self.broker, tx)
            case ControlAction.RESCHEDULE:
                await reschedule(self.store, self.broker, tx, event.generation)
