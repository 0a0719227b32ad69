"""``python -m services.sender``: the sender service."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiolimiter import AsyncLimiter

from services.sender.sending import SenderActor
from services.sender.ses import Ses
from shared.actor import ActorRunner
from shared.aws import open_sesv2
from shared.service import Runtime, Worker, run_service
from shared.settings import SenderSettings, load_settings


def main() -> None:
    settings = load_settings(SenderSettings)

    async def build(rt: Runtime) -> Sequence[Worker]:
        client = await open_sesv2(rt.exits, settings, settings.ses_endpoint_url)
        ses = Ses(client, settings.ses_from_address, settings.ses_configuration_set)
        rate = settings.ses_max_send_rate or await ses.max_send_rate()
        actor = SenderActor(rt.store, rt.broker, ses, AsyncLimiter(rate, 1.0), settings)
        return [ActorRunner(actor, rt.broker, rt.store, concurrency=settings.concurrency)]

    asyncio.run(run_service("sender", settings, build))


if __name__ == "__main__":
    main()
