"""``python -m services.ingest``: the ingest service."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from services.ingest.ingestion import IngestActor
from shared.actor import ActorRunner
from shared.aws import open_s3
from shared.service import Runtime, Worker, run_service
from shared.settings import IngestSettings, load_settings


def main() -> None:
    settings = load_settings(IngestSettings)

    async def build(rt: Runtime) -> Sequence[Worker]:
        s3 = await open_s3(rt.exits, settings)
        actor = IngestActor(rt.store, rt.broker, s3, settings)
        return [ActorRunner(actor, rt.broker, rt.store, concurrency=settings.concurrency)]

    asyncio.run(run_service("ingest", settings, build))


if __name__ == "__main__":
    main()
