"""What the handlers work with: the settings and the open clients, as Litestar dependencies.

``open_deps`` opens every client in the caller's ``AsyncExitStack`` (the app's lifespan);
tests open their own and hand a ``GatewayDeps`` to ``create_app``.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, cast

from litestar.datastructures import State
from litestar.di import NamedDependency

from shared.aws import open_s3
from shared.broker import Broker
from shared.service import open_runtime
from shared.settings import GatewaySettings
from shared.store import Store

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

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
    """The gateway's open clients (a plain class: it holds connections, not data)."""

    __slots__ = ("broker", "s3", "store")

    def __init__(self, *, broker: Broker, store: Store, s3: S3Client) -> None:
        self.broker = broker
        self.store = store
        self.s3 = s3


# How handlers ask for them: ``deps: Deps``, ``settings: Settings``.
Deps = NamedDependency[GatewayDeps]
Settings = NamedDependency[GatewaySettings]


async def open_deps(stack: AsyncExitStack, settings: GatewaySettings) -> GatewayDeps:
    runtime = await open_runtime(SERVICE, settings, stack)
    s3 = await open_s3(stack, settings)
    return GatewayDeps(broker=runtime.broker, store=runtime.store, s3=s3)


def provide_deps(state: State) -> GatewayDeps:
    return cast("GatewayDeps", state.deps)


def provide_settings(state: State) -> GatewaySettings:
    return cast("GatewaySettings", state.settings)
