"""The delivery timeout: every transaction completes, even when SES never reports on a mail.

    email.tx.status.SENT  ->  SentActor: complete it if every outcome is in; else schedule
                              email.expiry.<tx>  (Nats-Schedule @at SENT + timeout)
    email.tx.expire       ->  ExpiryActor: its SENT messages -> EXPIRED, then complete it

The timeout counts from the transaction's SENT, when its last message was sent, so every
message has had at least the whole timeout for its outcome. The schedule's ``Nats-Msg-Id``
and its time come from the SENT change itself, so a redelivered SENT schedules nothing new.
No polling: the stream fires the schedule, and a tracker that is down then finds it waiting.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

import structlog

from services.tracker.completion import complete_if_done
from shared.actor import Actor
from shared.broker import Broker
from shared.events import MessageOutcome, TxExpire, TxStatusChanged
from shared.outcomes import announce_moved
from shared.records import load_transaction
from shared.schedule import schedule_stamp
from shared.status import MessageStatus as M
from shared.status import TxStatus as T
from shared.store import Store
from shared.topology import CONSUMERS, Subjects
from shared.transitions import move_messages

__all__ = ["ExpiryActor", "SentActor", "expire_messages"]

log = structlog.get_logger("tracker.delivery_timeout")

# Messages expired per store transaction.
_PAGE: Final = 1000


class SentActor(Actor[TxStatusChanged]):
    """On ``email.tx.status.SENT``: complete the transaction, or schedule its expiry."""

    spec = CONSUMERS.TRACKER_SENT
    event_type = TxStatusChanged

    def __init__(self, store: Store, broker: Broker, *, delivery_timeout: timedelta) -> None:
        self.store = store
        self.broker = broker
        self.delivery_timeout = delivery_timeout

    async def handle(self, event: TxStatusChanged) -> None:
        if event.new_status != T.SENT:
            return
        if await complete_if_done(self.store, self.broker, event.transaction_id):
            return
        tx = await load_transaction(self.store, event.transaction_id)
        if tx.status != T.SENT:
            return  # completed by the outcomes' own check, before this event was read
        at = schedule_stamp(event.timestamp + self.delivery_timeout)
        await self.broker.publish(
            Subjects.expiry(event.transaction_id),
            TxExpire(transaction_id=event.transaction_id),
            msg_id=f"{event.transaction_id}:expiry",
            headers={"Nats-Schedule": f"@at {at}", "Nats-Schedule-Target": Subjects.TX_EXPIRE},
        )
        log.info("delivery timeout scheduled", at=at)


class ExpiryActor(Actor[TxExpire]):
    """On ``email.tx.expire``: what still has no outcome expires; the transaction completes."""

    spec = CONSUMERS.TRACKER_EXPIRE
    event_type = TxExpire

    def __init__(self, store: Store, broker: Broker) -> None:
        self.store = store
        self.broker = broker

    async def handle(self, event: TxExpire) -> None:
        expired = await expire_messages(self.store, self.broker, event.transaction_id)
        completed = await complete_if_done(self.store, self.broker, event.transaction_id)
        log.info("delivery timeout over", expired=expired, completed=completed)


async def expire_messages(store: Store, broker: Broker, transaction_id: str) -> int:
    """Move the SENT transaction's SENT messages to EXPIRED, a page per store transaction;
    returns how many moved."""
    tx = await load_transaction(store, transaction_id)
    if tx.status != T.SENT:
        return 0
    expired = 0
    while True:
        page = [
            MessageOutcome(message_id=str(raw["_id"]), row=int(raw["row"]), email=raw["email"])
            async for raw in store.messages.find(
                {"transaction_id": transaction_id, "status": M.SENT},
                {"_id": 1, "row": 1, "email": 1},
                limit=_PAGE,
            )
        ]
        if not page:
            return expired
        ids = [m.message_id for m in page]
        moved = await move_messages(store, transaction_id, ids, M.SENT, M.EXPIRED)
        if moved == 0:
            return expired  # outcomes overtook every one of them
        expired += moved
        known = {m.message_id: m for m in page}
        await announce_moved(store, broker, transaction_id, tx.tenant, M.EXPIRED, ids, moved, known)
