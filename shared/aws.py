"""AWS clients through aiobotocore, pointed at real AWS or a local endpoint by settings."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, Literal

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from shared.settings import ServiceSettings

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_sesv2 import SESV2Client
    from types_aiobotocore_sqs import SQSClient

__all__ = ["open_s3", "open_sesv2", "open_sqs"]

_CONFIG = AioConfig(
    retries={"max_attempts": 3, "mode": "standard"},
    connect_timeout=5,
    read_timeout=30,
    max_pool_connections=64,
)


async def open_s3(stack: AsyncExitStack, settings: ServiceSettings) -> S3Client:
    client: S3Client = await _open(stack, "s3", settings, settings.aws_endpoint_url, _CONFIG)
    return client


async def open_sqs(stack: AsyncExitStack, settings: ServiceSettings) -> SQSClient:
    client: SQSClient = await _open(stack, "sqs", settings, settings.aws_endpoint_url, _CONFIG)
    return client


async def open_sesv2(
    stack: AsyncExitStack,
    settings: ServiceSettings,
    endpoint_url: str | None,
    *,
    read_timeout: float = 10.0,
    connections: int = 64,
) -> SESV2Client:
    # SES retries are ours (classified at the adapter), not botocore's.
    config = _CONFIG.merge(
        AioConfig(
            retries={"max_attempts": 1, "mode": "standard"},
            read_timeout=read_timeout,
            max_pool_connections=connections,
            # Our calls are typed against the stubs; checking each one again costs ~7 % of
            # the sender's CPU per mail.
            parameter_validation=False,
        )
    )
    client: SESV2Client = await _open(
        stack, "sesv2", settings, endpoint_url or settings.aws_endpoint_url, config
    )
    return client


async def _open(
    stack: AsyncExitStack,
    service: Literal["s3", "sqs", "sesv2"],
    settings: ServiceSettings,
    endpoint_url: str | None,
    config: AioConfig,
) -> Any:
    return await stack.enter_async_context(
        get_session().create_client(
            service, region_name=settings.aws_region, endpoint_url=endpoint_url, config=config
        )
    )
