"""A real callback receiver for the tests: an aiohttp server on a loopback port, answering
from a plan per path (then 200), that can be stopped and started again on the same port."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import msgspec
from aiohttp import web
from standardwebhooks import Webhook

from shared.actor import ActorRunner
from stack.processes import free_port

# Callback receivers in the tests are on 127.0.0.1: allowed, as a test deployment would.
TEST_NETWORKS = "127.0.0.0/8,::1/128"


class Answer(msgspec.Struct, frozen=True):
    status: int
    headers: dict[str, str] = {}


class Received(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    body: str
    headers: dict[str, str]
    status: int
    monotonic: float

    @property
    def payload(self) -> dict[str, Any]:
        decoded: dict[str, Any] = msgspec.json.decode(self.body)
        return decoded

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    def verifies(self, secret: str) -> bool:
        """Whether ``standardwebhooks`` accepts the request as signed with ``secret``."""
        try:
            Webhook(secret).verify(self.body, self.headers)
        except Exception:
            return False
        return True


class Receiver:
    """``url(name)`` is ``http://127.0.0.1:<port>/hook/<name>``; ``plans[name]`` the answers
    its next requests get, in order (an ``int`` status or an ``Answer``)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[Received] = []
        self.plans: dict[str, list[int | Answer]] = {}
        self._runner: web.AppRunner | None = None

    def url(self, name: str = "main") -> str:
        return f"http://127.0.0.1:{self.port}/hook/{name}"

    def delivered(self, name: str | None = None) -> list[Received]:
        """The requests answered with a 2xx (of ``name`` only if given)."""
        return [
            r
            for r in self.received
            if 200 <= r.status < 300 and (name is None or r.path == f"/hook/{name}")
        ]

    async def _hook(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        plan = self.plans.get(name) or []
        answer = plan.pop(0) if plan else 200
        if isinstance(answer, int):
            answer = Answer(answer)
        self.received.append(
            Received(
                path=request.path,
                body=(await request.read()).decode("utf-8"),
                headers={k.lower(): v for k, v in request.headers.items()},
                status=answer.status,
                monotonic=time.monotonic(),
            )
        )
        return web.Response(status=answer.status, headers=answer.headers)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook/{name}", self._hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def run_until(
    runners: list[ActorRunner[Any]],
    done: Callable[[], Awaitable[bool]],
    seconds: float,
    *,
    during: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Run the actors until ``done`` (checked every 0.1 s), for at most ``seconds``;
    ``during`` runs alongside them first (a receiver's outage, say)."""
    async with AsyncExitStack() as stack:
        tasks = [asyncio.create_task(runner.run()) for runner in runners]

        async def stop_all() -> None:
            for runner in runners:
                runner.stop()
            await asyncio.wait_for(asyncio.gather(*tasks), 15)

        stack.push_async_callback(stop_all)
        if during is not None:
            await during()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if await done():
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"not done within {seconds} s")
