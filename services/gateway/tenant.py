"""Whose data a request sees: the tenant of the API key that ``auth`` authenticated.

Handlers take the tenant as the ``tenant`` dependency and pass it down to every read and
write; every read of a record filters by it, so another tenant's id answers exactly like a
missing one. ``caller`` is the whole key (its mode, its admin flag).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers import BaseRouteHandler

from services.gateway.errors import ApiError, Code
from shared.api_keys import ApiKey
from shared.documents import Transaction
from shared.settings import GatewaySettings

if TYPE_CHECKING:
    from services.gateway.deps import GatewayDeps

__all__ = [
    "Caller",
    "Tenant",
    "admin_only",
    "own_transaction",
    "provide_caller",
    "provide_tenant",
    "review_scope",
]


# How handlers ask for them: ``tenant: Tenant``, ``caller: Caller``.
Tenant = NamedDependency[str]
Caller = NamedDependency[ApiKey]


def provide_caller(request: Request[Any, Any, Any]) -> ApiKey:
    return cast("ApiKey", request.auth)


def provide_tenant(request: Request[Any, Any, Any]) -> str:
    return provide_caller(request).tenant


def admin_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """The guard of the ``/admin`` endpoints: 403 ``FORBIDDEN`` for a key that is not admin."""
    if not cast("ApiKey", connection.auth).admin:
        raise ApiError(Code.FORBIDDEN, "this endpoint needs an admin key")


async def own_transaction(
    deps: GatewayDeps, tenant: str, transaction_id: str, *, recent: bool = False
) -> Transaction:
    """The tenant's transaction, or 404 ``TRANSACTION_NOT_FOUND``: another tenant's answers
    exactly like a missing one. ``recent``: as read up to ``STATUS_MAX_AGE_SECONDS`` ago
    (the status poll's answer); otherwise read after the call."""
    key = (tenant, transaction_id)
    tx = await (deps.statuses.get(key) if recent else deps.transactions.get(key))
    if tx is None:
        raise ApiError(
            Code.TRANSACTION_NOT_FOUND,
            f"no transaction {transaction_id!r}",
            details={"transaction_id": transaction_id},
        )
    return tx


def review_scope(settings: GatewaySettings, caller: ApiKey) -> str | None:
    """Whose work an admin key reviews (dead letters, every transaction): its own tenant's,
    or, for the operator tenant's admin keys, everyone's (None)."""
    return None if caller.tenant == settings.operator_tenant else caller.tenant
