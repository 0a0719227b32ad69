"""``/api/v1/transactions/{id}/audit``: everything that happened to one transaction.

Its status history (with the time spent in each status), its callbacks with every try, its
dead letters (the work on it the platform gave up on) and the operator actions asked for
it (cancel, reschedule, retry-failed, callback replays, dead-letter retries and discards),
each with who and when. The tenant's own transactions only: another's answers 404 as a
missing one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Controller, get
from litestar.params import FromPath

from services.gateway.callbacks import CallbackView, callback_view
from services.gateway.dead_letters import DeadLetterItem, dead_letter_item
from services.gateway.deps import Deps
from services.gateway.errors import Code, error_responses
from services.gateway.operator_actions import ActionView, action_view, load_actions
from services.gateway.review import letters_of_transaction
from services.gateway.tenant import Tenant, own_transaction
from shared.callback_outbox import load_deliveries
from shared.documents import Transaction
from shared.status import FINAL_TX_STATUSES, TxStatus

__all__ = ["AuditController", "AuditStatusEntry", "TransactionAudit"]


class AuditStatusEntry(msgspec.Struct, frozen=True, kw_only=True):
    status: TxStatus
    timestamp: datetime
    metadata: dict[str, Any]
    # Until the next status (or now, for the current one); null for a final status.
    seconds: float | None


class TransactionAudit(msgspec.Struct, frozen=True, kw_only=True):
    transaction_id: str
    status: TxStatus
    status_history: list[AuditStatusEntry]
    callbacks: list[CallbackView]
    # At most 200, oldest first (a letter per recipient out of send retries).
    dead_letters: list[DeadLetterItem]
    operator_actions: list[ActionView]


def _history(tx: Transaction, now: datetime) -> list[AuditStatusEntry]:
    entries = tx.status_history
    found = []
    for n, entry in enumerate(entries):
        if n + 1 < len(entries):
            seconds: float | None = (entries[n + 1].at - entry.at).total_seconds()
        elif entry.status in FINAL_TX_STATUSES:
            seconds = None
        else:
            seconds = max(0.0, (now - entry.at).total_seconds())
        found.append(
            AuditStatusEntry(
                status=entry.status,
                timestamp=entry.at,
                metadata=entry.metadata,
                seconds=None if seconds is None else round(seconds, 3),
            )
        )
    return found


class AuditController(Controller):
    path = "/transactions/{transaction_id:str}/audit"
    tags = ["transactions"]  # noqa: RUF012 -- Litestar's declared attribute type is a list

    @get(
        summary="The transaction's audit trail",
        description=(
            "Status history (seconds in each status), callbacks with every try, dead letters "
            "and operator actions (who: the API key's id and prefix, its tenant; when; what)."
        ),
        responses=error_responses(Code.VALIDATION_ERROR, Code.TRANSACTION_NOT_FOUND),
    )
    async def get_audit(
        self, transaction_id: FromPath[str], deps: Deps, tenant: Tenant
    ) -> TransactionAudit:
        tx = await own_transaction(deps, tenant, transaction_id)
        deliveries = await load_deliveries(deps.store, tx.id)
        letters = await letters_of_transaction(deps.store, tx.id)
        actions = await load_actions(deps.store, tx.id)
        return TransactionAudit(
            transaction_id=tx.id,
            status=tx.status,
            status_history=_history(tx, datetime.now(UTC)),
            callbacks=[callback_view(d) for d in deliveries],
            dead_letters=[dead_letter_item(x) for x in letters],
            operator_actions=[action_view(a) for a in actions],
        )
