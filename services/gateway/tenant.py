"""Whose data a request sees.

There is no authentication yet, so every request acts for ``DEFAULT_TENANT``. Handlers take
the tenant as the ``tenant`` dependency and pass it down to every read and write, so adding
API keys later means replacing ``provide_tenant`` and nothing else.
"""

from __future__ import annotations

from typing import Final

from litestar.di import NamedDependency

__all__ = ["DEFAULT_TENANT", "Tenant", "provide_tenant"]

DEFAULT_TENANT: Final = "default"


# How handlers ask for it: ``tenant: Tenant``.
Tenant = NamedDependency[str]


def provide_tenant() -> str:
    return DEFAULT_TENANT
