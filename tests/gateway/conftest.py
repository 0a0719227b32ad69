"""Gateway fixtures: the app against the session's real stack.

Litestar's ``AsyncTestClient`` runs the app on its own event loop, in a thread (a blocking
portal), and PyMongo's and nats-py's async clients belong to the loop that opened them. So
the app under ``AsyncTestClient`` opens its clients in its lifespan, as in production, and
the test checks what it did through ``deps``: clients opened on the test's own loop.

Each test gets a fresh database (``db_name``), the streams the gateway publishes to emptied,
an API key of ``TENANT`` (``api_key``) and ``make_client`` to run the app with settings of
its own (a tiny upload limit, say) and the key it sends (``api_key=None``: none).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

import msgspec
import pytest
import uvicorn
from litestar import Litestar
from litestar.testing import AsyncTestClient

from services.gateway.app import create_app
from services.gateway.deps import GatewayDeps, open_deps
from shared.settings import GatewaySettings, load_settings
from stack.launcher import StackInfo
from stack.processes import free_port
from tests.conftest import drop_database, issue_key, settings_for

GATEWAY_STREAMS = ("TX_ACCEPTED", "TX_STATUS", "TX_CONTROL")
# The tenant whose key ``client`` sends.
TENANT = "acme"
_OWN_KEY = object()

ClientFactory = Callable[..., AbstractAsyncContextManager[AsyncTestClient[Litestar]]]
ServerFactory = Callable[..., AbstractAsyncContextManager[str]]


@pytest.fixture
def gateway_settings(
    stack_info: StackInfo, db_name: str, monkeypatch: pytest.MonkeyPatch
) -> GatewaySettings:
    # botocore reads credentials from the environment, not from our settings.
    for name, value in stack_info.env().items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    return load_settings(GatewaySettings, settings_for(stack_info, db_name))


@pytest.fixture
async def deps(gateway_settings: GatewaySettings) -> AsyncIterator[GatewayDeps]:
    async with AsyncExitStack() as stack:
        opened = await open_deps(stack, gateway_settings)
        for stream in GATEWAY_STREAMS:
            await opened.broker.js.purge_stream(stream)
        yield opened
        await drop_database(opened.store.client, gateway_settings.mongodb_db)


@pytest.fixture
async def api_key(deps: GatewayDeps) -> str:
    """A live, non-admin key of ``TENANT``."""
    return await issue_key(deps.store, TENANT)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def make_client(
    gateway_settings: GatewaySettings, deps: GatewayDeps, api_key: str
) -> ClientFactory:
    # ``deps`` first: it purges the streams and drops the database after the app is gone.
    """``async with make_client(max_upload_bytes=10) as client``: the app with overrides,
    sending ``api_key`` unless told another key (``api_key="..."``) or none (``None``)."""

    @asynccontextmanager
    async def open_client(
        api_key: Any = _OWN_KEY, **overrides: Any
    ) -> AsyncIterator[AsyncTestClient[Litestar]]:
        settings = msgspec.structs.replace(gateway_settings, **overrides)
        async with AsyncTestClient(create_app(settings)) as client:
            key = own_key if api_key is _OWN_KEY else api_key
            if key is not None:
                client.headers.update(bearer(key))
            yield client

    own_key = api_key

    return open_client


@pytest.fixture
async def client(make_client: ClientFactory) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with make_client() as opened:
        yield opened


@pytest.fixture
def make_server(gateway_settings: GatewaySettings, deps: GatewayDeps) -> ServerFactory:
    """``async with make_server(max_upload_bytes=10) as base_url``: the app with overrides,
    served by uvicorn on a free port on this test's loop and clients: real HTTP framing
    (chunked bodies, Content-Length), which Litestar's test client does not stream."""

    @asynccontextmanager
    async def serve(**overrides: Any) -> AsyncIterator[str]:
        settings = msgspec.structs.replace(gateway_settings, **overrides)
        port = free_port()
        config = uvicorn.Config(
            create_app(settings, deps),
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
            ws="none",
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            assert not task.done(), task
            await asyncio.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 10)

    return serve
