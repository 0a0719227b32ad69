"""Sending one batch: claim each waiting message, render it, send it through SES, record it.

    claim     SCHEDULED/READY_TO_SEND -> SENDING   (conditional: one sender wins a message)
    send      render + SES SendEmail, under the account's rate
    record    SENDING -> SENT with the SES id, or -> FAILED with the reason;
              a retryable failure puts the message back (-> READY_TO_SEND) and the batch
              is redelivered later, when only what is still waiting is claimed again

Counter changes are summed per batch and applied with one ``$inc`` per phase.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from aiolimiter import AsyncLimiter
from msgspec.structs import replace

from services.sender.ses import Ses, SesRejected
from shared.actor import Actor
from shared.broker import Broker
from shared.documents import Batch, Message, from_document, message_id
from shared.errors import RetryableError, TemplateError
from shared.events import SendBatch
from shared.records import load_template, load_transaction
from shared.settings import SenderSettings
from shared.status import MessageStatus as M
from shared.status import TxStatus
from shared.store import Store
from shared.template import CompiledTemplate, compile_template
from shared.topology import CONSUMERS
from shared.transitions import move_message, transition_tx

__all__ = ["SenderActor", "simulator_address"]

log = structlog.get_logger("sender")

_WAITING = (M.SCHEDULED, M.READY_TO_SEND)


class SenderActor(Actor[SendBatch]):
    spec = CONSUMERS.SENDER
    event_type = SendBatch

    def __init__(
        self,
        store: Store,
        broker: Broker,
        ses: Ses,
        limiter: AsyncLimiter,
        settings: SenderSettings,
    ) -> None:
        self.store = store
        self.broker = broker
        self.ses = ses
        self.limiter = limiter
        self.lease = timedelta(seconds=settings.send_lease_seconds)
        self.concurrency = settings.send_concurrency
        self._templates: dict[str, CompiledTemplate] = {}

    async def handle(self, event: SendBatch) -> None:
        tx = await load_transaction(self.store, event.transaction_id)
        if tx.status != TxStatus.READY_TO_SEND:
            log.info("not sending", status=tx.status, batch=event.batch)
            return
        template = await self._template(tx.template_id)
        claimed = await self._claim(tx.id, event.batch)
        test_mode = tx.mode == "test"
        results = await asyncio.gather(*(self._send(m, template, test_mode) for m in claimed))
        outcomes = [outcome for outcome, _ in results]
        total: Counter[str] = Counter()
        for _, moves in results:
            total.update(moves)  # not ``+``: it drops the negative counts
        await self._count(tx.id, total)
        retry = outcomes.count("retry")
        await self._finish_if_all_dispatched(tx.id)
        log.info(
            "batch sent",
            batch=event.batch,
            claimed=len(claimed),
            sent=outcomes.count("sent"),
            failed=outcomes.count("failed"),
            retry=retry,
        )
        if retry:
            raise RetryableError(f"{retry} messages of batch {event.batch} will be retried")

    async def _template(self, template_id: str) -> CompiledTemplate:
        compiled = self._templates.get(template_id)
        if compiled is None:
            template = await load_template(self.store, template_id)
            compiled = compile_template(template.subject, template.html, template.text)
            self._templates[template_id] = compiled
        return compiled

    async def _claim(self, transaction_id: str, number: int) -> list[Message]:
        raw = await self.store.batches.find_one({"_id": f"{transaction_id}:{number}"})
        if raw is None:
            raise RetryableError(f"batch {number} of {transaction_id} is not stored yet")
        batch = from_document(raw, Batch)
        ids = [message_id(transaction_id, row) for row in batch.rows]
        waiting = [
            from_document(doc, Message)
            async for doc in self.store.messages.find({"_id": {"$in": ids}})
            if doc["status"] in _WAITING
        ]
        attempt_id = uuid.uuid4().hex
        lease_until = datetime.now(UTC) + self.lease

        async def claim(m: Message) -> Message | None:
            old = await move_message(
                self.store,
                m.id,
                [m.status],
                M.SENDING,
                also_set={
                    "attempt_id": attempt_id,
                    "lease_until": lease_until,
                    "attempts": m.attempts + 1,
                },
            )
            return None if old is None else m

        won = [m for m in await asyncio.gather(*(claim(m) for m in waiting)) if m is not None]
        moves: Counter[str] = Counter()
        for m in won:
            moves[m.status.lower()] -= 1
            moves["sending"] += 1
        await self._count(transaction_id, moves)
        # Each claimed message now carries this attempt's id; results are guarded by it.
        return [replace(m, status=M.SENDING, attempt_id=attempt_id) for m in won]

    async def _send(
        self, m: Message, template: CompiledTemplate, test_mode: bool
    ) -> tuple[str, Counter[str]]:
        """Send one claimed message; returns "sent", "failed" or "retry" and the counter
        changes it made."""
        moves: Counter[str] = Counter()
        try:
            mail = template.render({**m.data, "email": m.email})
            async with self.limiter:
                to = simulator_address(m.email) if test_mode else m.email
                ses_id = await self.ses.send(to, mail, _tags(m))
        except (TemplateError, SesRejected) as e:
            code = e.code if isinstance(e, SesRejected) else "TEMPLATE_RENDER_ERROR"
            error = {"code": code, "message": str(e), "at": datetime.now(UTC)}
            if await self._record(m, M.FAILED, {"last_error": error}):
                moves["sending"] -= 1
                moves["failed"] += 1
            moves["dispatched"] += 1
            outcome = "failed"
        except RetryableError as e:
            error = {"code": type(e).__name__, "message": str(e), "at": datetime.now(UTC)}
            if await self._record(m, M.READY_TO_SEND, {"last_error": error}):
                moves["sending"] -= 1
                moves["ready_to_send"] += 1
            outcome = "retry"
        else:
            fields = {"ses_message_id": ses_id, "sent_at": datetime.now(UTC)}
            if await self._record(m, M.SENT, fields):
                moves["sending"] -= 1
                moves["sent"] += 1
            else:
                # An SES event overtook us and the tracker moved the message already;
                # the SES id is still ours to record.
                await self.store.messages.update_one(
                    {"_id": m.id, "attempt_id": m.attempt_id}, {"$set": fields}
                )
            moves["dispatched"] += 1
            outcome = "sent"
        return outcome, moves

    async def _record(self, m: Message, new: M, fields: dict[str, Any]) -> bool:
        old = await move_message(
            self.store,
            m.id,
            [M.SENDING],
            new,
            also_set=fields,
            guard={"attempt_id": m.attempt_id},
        )
        return old is not None

    async def _count(self, transaction_id: str, moves: Counter[str]) -> None:
        inc = {f"counters.{key}": n for key, n in moves.items() if n}
        if inc:
            await self.store.transactions.update_one({"_id": transaction_id}, {"$inc": inc})

    async def _finish_if_all_dispatched(self, transaction_id: str) -> None:
        tx = await load_transaction(self.store, transaction_id)
        total = tx.counters.get("total", 0)
        if tx.status == TxStatus.READY_TO_SEND and tx.counters.get("dispatched", 0) >= total:
            await transition_tx(self.store, self.broker, tx, TxStatus.SENT)


def _tags(m: Message) -> dict[str, str]:
    """SES tags every event of this mail carries back; SES allows only [A-Za-z0-9_-] in
    tag values, so the message id ``<tx>:<row>`` is written with a dash."""
    return {
        "message_id": f"{m.transaction_id}-{m.row}",
        "transaction_id": m.transaction_id,
        "row": str(m.row),
    }


SIMULATOR_DOMAIN = "simulator.amazonses.com"


def simulator_address(email: str) -> str:
    """Where a test-mode message goes: SES's mailbox simulator, never a real mailbox.

    A simulator address keeps its scenario (``bounce@``, ``complaint+x@``...); any other
    address becomes ``success@``: the whole pipeline runs, with SES's own events, and no
    mail reaches a person.
    """
    if email.rpartition("@")[2].lower() == SIMULATOR_DOMAIN:
        return email
    return f"success@{SIMULATOR_DOMAIN}"
