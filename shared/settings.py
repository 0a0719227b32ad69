"""Settings: one frozen Struct per service, read from the environment once in ``__main__``.

Every field is read from the upper-cased variable of the same name (``nats_url`` from
``NATS_URL``); fields whose variable is unset or empty keep their default, and a value that
does not convert is an error at start-up rather than a surprise later.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Literal, TypeVar

import msgspec

__all__ = [
    "CsvSettings",
    "GatewaySettings",
    "IngestSettings",
    "SchedulerSettings",
    "SenderSettings",
    "ServiceSettings",
    "SettingsError",
    "TrackerSettings",
    "load_settings",
]


class SettingsError(ValueError):
    pass


class ServiceSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What every service needs: the broker, the store, AWS and logging."""

    nats_url: str = "nats://127.0.0.1:4222"
    mongodb_uri: str = "mongodb://127.0.0.1:27017/?directConnection=true"
    mongodb_db: str = "email_platform"
    # Unset means real AWS; set for moto, localstack or any compatible endpoint.
    aws_endpoint_url: str | None = None
    aws_region: str = "us-east-1"
    s3_bucket: str = "email-uploads"
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "info"
    # How many messages one actor works on at once.
    concurrency: Annotated[int, msgspec.Meta(ge=1)] = 8


class CsvSettings(ServiceSettings, frozen=True, kw_only=True):
    """What a service reading recipient files needs: the limits of one file, the same for
    ingest and for the gateway's ``validate_only``.

    Rows are data rows (not the header, not blank lines); past max_rows the file fails
    TOO_MANY_ROWS, a header wider than max_columns fails it TOO_MANY_COLUMNS, and a field
    longer than max_field_chars makes its row a FIELD_TOO_LONG row error. Python's csv
    module refuses fields over 131,072 characters itself, so a larger max_field_chars could
    never apply.
    """

    max_rows: Annotated[int, msgspec.Meta(ge=1)] = 1_000_000
    max_columns: Annotated[int, msgspec.Meta(ge=1)] = 100
    max_field_chars: Annotated[int, msgspec.Meta(ge=1, le=131_072)] = 10_000


class GatewaySettings(CsvSettings, frozen=True, kw_only=True):
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8000
    # Upload parts streamed to S3; S3 wants at least 5 MiB for every part but the last.
    upload_part_bytes: int = 8 * 1024 * 1024
    max_upload_bytes: int = 100 * 1024 * 1024
    # Requests per second per API key, and how many may come at once after a quiet spell.
    api_rate_per_second: Annotated[float, msgspec.Meta(gt=0)] = 20.0
    api_rate_burst: Annotated[int, msgspec.Meta(ge=1)] = 40
    # How long a submission waits for another one holding its Idempotency-Key to finish
    # before answering 409 IDEMPOTENCY_KEY_IN_USE.
    idempotency_wait_seconds: Annotated[float, msgspec.Meta(gt=0)] = 5.0


class IngestSettings(CsvSettings, frozen=True, kw_only=True):
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 500


class SchedulerSettings(ServiceSettings, frozen=True, kw_only=True):
    pass


class SenderSettings(ServiceSettings, frozen=True, kw_only=True):
    # Unset means the same endpoint as every other AWS service.
    ses_endpoint_url: str | None = None
    ses_from_address: str = "campaigns@example.com"
    ses_configuration_set: str = "email-platform"
    # Messages of one batch sent at once.
    send_concurrency: Annotated[int, msgspec.Meta(ge=1)] = 16
    # Unset means the account's own ceiling, from SES GetAccount.
    ses_max_send_rate: Annotated[float, msgspec.Meta(gt=0)] | None = None
    # How long a claimed message is ours before it counts as abandoned.
    send_lease_seconds: float = 300.0


class TrackerSettings(ServiceSettings, frozen=True, kw_only=True):
    sqs_queue_url: str | None = None
    sqs_wait_seconds: int = 1
    callback_timeout_seconds: float = 10.0


S = TypeVar("S", bound=ServiceSettings)


def load_settings(kind: type[S], environ: Mapping[str, str] | None = None) -> S:
    env = os.environ if environ is None else environ
    values = {
        field.encode_name: env[field.name.upper()]
        for field in msgspec.structs.fields(kind)
        if env.get(field.name.upper())
    }
    try:
        return msgspec.convert(values, kind, strict=False)
    except msgspec.ValidationError as e:
        raise SettingsError(f"{kind.__name__}: {e}") from e
