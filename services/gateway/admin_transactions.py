"""``/api/v1/admin/transactions``: transactions under review, for admins.

Admin keys only: their own tenant's transactions, or, for the operator tenant's admin keys
(``OPERATOR_TENANT``), every tenant's (``tenant.review_scope``). ``?status=FAILED`` is the
review of failed transactions: each item names its tenant and says why it failed
(``failure``). Newest first, read in windows of time on the indexes (status, created_at,
_id) and (tenant, status, created_at, _id) (see ``records.page_newest``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final

import msgspec
from litestar import Controller, get
from litestar.params import QueryParameter

from services.gateway.cursor import (
    newest_after,
    newest_cursor,
)
from services.gateway.deps import Deps, Settings
from services.gateway.errors import Code, error_responses
from services.gateway.records import page_newest
from services.gateway.tenant import Caller, admin_only, review_scope
from services.gateway.views import counters_view
from shared.documents import Transaction, from_document
from shared.status import TxStatus

__all__ = ["AdminTransactionController", "AdminTransactionItem", "AdminTransactionPage"]

_DEFAULT_LIMIT: Final = 50
_MAX_LIMIT: Final = 200

StatusFilter = Annotated[
    TxStatus | None, QueryParameter(description="Only this status, e.g. `FAILED`.")
]
PageLimit = Annotated[int, QueryParameter(ge=1, le=_MAX_LIMIT, description="Page size.")]
Cursor = Annotated[
    str | None,
    QueryParameter(description="`next_cursor` of the previous page.", max_length=512),
]


class AdminTransactionItem(msgspec.Struct, frozen=True, kw_only=True):
    transaction_id: str
    tenant: str
    status: TxStatus
    template_id: str
    counters: dict[str, int]
    # Why a FAILED transaction failed.
    failure: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime


class AdminTransactionPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[AdminTransactionItem]
    next_cursor: str | None


def _item(tx: Transaction) -> AdminTransactionItem:
    return AdminTransactionItem(
        transaction_id=tx.id,
        tenant=tx.tenant,
        status=tx.status,
        template_id=tx.template_id,
        counters=counters_view(tx.counters),
        failure=tx.failure,
        created_at=tx.created_at,
        updated_at=tx.updated_at,
    )


def _query(tenant: str | None, status: TxStatus | None) -> dict[str, Any]:
    query: dict[str, Any] = {} if tenant is None else {"tenant": tenant}
    if status is not None:
        query["status"] = status
    return query


class AdminTransactionController(Controller):
    path = "/admin/transactions"
    tags = ["admin"]  # noqa: RUF012 -- Litestar's declared attribute type is a list
    guards = [admin_only]  # noqa: RUF012 -- Litestar's declared attribute type is a list

    @get(
        summary="Transactions under review, newest first",
        description=(
            "The caller's tenant's (the operator tenant's admin keys: every tenant's). "
            "`?status=FAILED` lists the failed ones, with their `failure`."
        ),
        responses=error_responses(Code.VALIDATION_ERROR, Code.FORBIDDEN, Code.INVALID_CURSOR),
    )
    async def list_all_transactions(
        self,
        deps: Deps,
        settings: Settings,
        caller: Caller,
        status: StatusFilter = None,
        cursor: Cursor = None,
        limit: PageLimit = _DEFAULT_LIMIT,
    ) -> AdminTransactionPage:
        found = [
            from_document(raw, Transaction)
            for raw in await page_newest(
                deps.store.transactions,
                _query(review_scope(settings, caller), status),
                field="created_at",
                after=newest_after(cursor),
                limit=limit + 1,
                what="list transactions",
            )
        ]
        return AdminTransactionPage(
            items=[_item(tx) for tx in found[:limit]],
            next_cursor=newest_cursor([(tx.created_at, tx.id) for tx in found], limit),
        )
