"""What the handlers work with: the settings and the open clients, as Litestar dependencies.

``open_deps`` opens every client in the caller's ``AsyncExitStack`` (the app's lifespan);
tests open their own and hand a ``GatewayDeps`` to ``create_app``.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, cast

from litestar.datastructures import State
from litestar.di import NamedDependency

from services.gateway.coalesce import Coalescer
from services.gateway.key_cache import KeyCache
from services.gateway.recent_reads import RecentReads
from services.gateway.records import find_transaction
from shared.aws import open_s3
from shared.broker import Broker
from shared.service import open_runtime
from shared.settings import GatewaySettings
from shared.store import Store

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

    from shared.documents import Transaction

__all__ = [
    "Deps",
    "GatewayDeps",
    "Settings",
    "open_deps",
    "provide_deps",
    "provide_settings",
]

SERVICE = "gateway"


class GatewayDeps:
    """The gateway's open clients (a plain class: it holds connections, not data), and the
    reads every polling request makes: its API key, cached (services/gateway/key_cache.py),
    and its transaction, coalesced (services/gateway/coalesce.py), or for the status poll
    answered from a recent read (services/gateway/recent_reads.py)."""

    __slots__ = ("api_keys", "broker", "s3", "statuses", "store", "transactions")

    def __init__(
        self,
        *,
        broker: Broker,
        store: Store,
        s3: S3Client,
        settings: GatewaySettings,
    ) -> None:
        self.broker = broker
        self.store = store
        self.s3 = s3
        self.api_keys = KeyCache(store, settings.api_key_cache_seconds)
        # By (tenant, transaction id).
        self.transactions: Coalescer[tuple[str, str], Transaction | None] = Coalescer(
            lambda ids: find_transaction(store, *ids)
        )
        # Refreshed after a tenth of its age: a read that waits behind a campaign's writes
        # (up to a second, bench/e2e.py) still ends before the answer is too old to give.
        self.statuses: RecentReads[tuple[str, str], Transaction] = RecentReads(
            lambda ids: find_transaction(store, *ids),
            refresh_after=settings.status_max_age_seconds / 10,
            max_age=settings.status_max_age_seconds,
        )


# How handlers ask for them: ``deps: Deps``, ``settings: Settings``.
Deps = NamedDependency[GatewayDeps]
Settings = NamedDependency[GatewaySettings]


async def open_deps(stack: AsyncExitStack, settings: GatewaySettings) -> GatewayDeps:
    runtime = await open_runtime(SERVICE, settings, stack)
    s3 = await open_s3(stack, settings)
    return GatewayDeps(broker=runtime.broker, store=runtime.store, s3=s3, settings=settings)


def provide_deps(state: State) -> GatewayDeps:
    return cast("GatewayDeps", state.deps)


def provide_settings(state: State) -> GatewaySettings:
    return cast("GatewaySettings", state.settings)
