"""``python -m services.sender``: the sender service."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from services.sender.sending import open_sender
from shared.actor import ActorRunner
from shared.service import Runtime, Worker, run_service
from shared.settings import SenderSettings, load_settings


def main() -> None:
    settings = load_settings(SenderSettings)

    async def build(rt: Runtime) -> Sequence[Worker]:
        actor = await open_sender(rt, settings)
        return [ActorRunner(actor, rt.broker, rt.store, concurrency=settings.concurrency)]

    asyncio.run(run_service("sender", settings, build))


if __name__ == "__main__":
    main()
