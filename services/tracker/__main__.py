"""``python -m services.tracker``: settings, then the service's workers until SIGTERM."""

from __future__ import annotations

import asyncio

from services.tracker.workers import build_workers
from shared.service import Runtime, Worker, run_service
from shared.settings import TrackerSettings, load_settings

__all__ = ["main"]


def main() -> None:
    settings = load_settings(TrackerSettings)

    async def build(runtime: Runtime) -> list[Worker]:
        return await build_workers(runtime, settings)

    asyncio.run(run_service("tracker", settings, build))


if __name__ == "__main__":
    main()
