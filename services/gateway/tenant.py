"""Whose data a request sees: the tenant of the API key that ``auth`` authenticated.

Handlers take the tenant as the ``tenant`` dependency and pass it down to every read and
write; every read of a record filters by it, so another tenant's id answers exactly like a
missing one. ``caller`` is the whole key (its mode, its admin flag).
"""

from __future__ import annotations

from typing import Any, cast

from litestar import Request
from litestar.di import NamedDependency

from shared.api_keys import ApiKey

__all__ = ["Caller", "Tenant", "provide_caller", "provide_tenant"]


# How handlers ask for them: ``tenant: Tenant``, ``caller: Caller``.
Tenant = NamedDependency[str]
Caller = NamedDependency[ApiKey]


def provide_caller(request: Request[Any, Any, Any]) -> ApiKey:
    return cast("ApiKey", request.auth)


def provide_tenant(request: Request[Any, Any, Any]) -> str:
    return provide_caller(request).tenant
