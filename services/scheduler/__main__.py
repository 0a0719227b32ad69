"""``python -m services.scheduler``: the scheduler service."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from services.scheduler.control import ControlActor
from services.scheduler.scheduling import DueActor, IngestedActor
from shared.actor import ActorRunner
from shared.service import Runtime, Worker, run_service
from shared.settings import SchedulerSettings, load_settings


def main() -> None:
    settings = load_settings(SchedulerSettings)

    async def build(rt: Runtime) -> Sequence[Worker]:
        return [
            ActorRunner(
                IngestedActor(rt.store, rt.broker),
                rt.broker,
                rt.store,
                concurrency=settings.concurrency,
            ),
            ActorRunner(
                DueActor(rt.store, rt.broker), rt.broker, rt.store, concurrency=settings.concurrency
            ),
            ActorRunner(ControlActor(rt.store, rt.broker), rt.broker, rt.store, concurrency=1),
        ]

    asyncio.run(run_service("scheduler", settings, build))


if __name__ == "__main__":
    main()
