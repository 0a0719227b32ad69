"""Settings: one frozen Struct per service, read from the environment once in ``__main__``.

Every field is read from the upper-cased variable of the same name (``nats_url`` from
``NATS_URL``); fields whose variable is unset or empty keep their default, and a value that
does not convert is an error at start-up rather than a surprise later.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Literal, TypeVar
from urllib.parse import urlsplit

import msgspec

from shared.safe_http import parse_networks

__all__ = [
    "MAX_BATCH_SIZE",
    "CsvSettings",
    "GatewaySettings",
    "IngestSettings",
    "SchedulerSettings",
    "SenderSettings",
    "ServiceSettings",
    "SettingsError",
    "TrackerSettings",
    "load_settings",
    "require_public_base_url",
    "require_unsubscribe_secret",
]


# The most messages ingest puts in one batch (one SendBatch, one sender read).
MAX_BATCH_SIZE = 10_000


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
    # The ops endpoint of ingest, scheduler, sender and tracker (shared/ops_server.py):
    # /metrics, /health/live, /health/ready. Unset: none; 0: any free port. The gateway
    # serves these on its own port and ignores both.
    ops_host: str = "127.0.0.1"
    ops_port: Annotated[int, msgspec.Meta(ge=0, le=65_535)] | None = None
    # The JetStream streams' and key-value buckets' replicas (ensure_topology): 1 on one
    # server (the embedded stack), 3 on a 3-node cluster (deploy/compose.yaml, deploy/k8s).
    nats_stream_replicas: Annotated[int, msgspec.Meta(ge=1, le=5)] = 1
    # How long a process told to stop (SIGTERM) may take to finish what it holds. Past it,
    # what is still in hand is let go unacknowledged (it comes back, to another replica, as
    # after a crash) and the process exits: a store or NATS that stopped answering cannot
    # hold a stop up. Keep it under the orchestrator's own grace before SIGKILL (Kubernetes
    # terminationGracePeriodSeconds, compose stop_grace_period).
    shutdown_grace_seconds: Annotated[float, msgspec.Meta(gt=0, le=3_600)] = 20.0


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
    # How far ahead a send time (the transaction's, a row's, a reschedule's) may be: past it,
    # SEND_AT_TOO_FAR. At most 36: the SCHEDULES stream keeps a schedule message 37 days.
    max_schedule_days: Annotated[int, msgspec.Meta(ge=1, le=36)] = 30


# The key the gateway and the sender sign and check unsubscribe links with
# (shared/unsubscribe.py); the same value in both. Make one with
# ``python -c "import secrets; print(secrets.token_urlsafe(32))"``.
UnsubscribeSecret = Annotated[str, msgspec.Meta(min_length=32)]


class GatewaySettings(CsvSettings, frozen=True, kw_only=True):
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8000
    # Upload parts streamed to S3; S3 wants at least 5 MiB for every part but the last.
    upload_part_bytes: int = 8 * 1024 * 1024
    max_upload_bytes: int = 100 * 1024 * 1024
    # Requests per second per API key, and how many may come at once after a quiet spell.
    api_rate_per_second: Annotated[float, msgspec.Meta(gt=0)] = 20.0
    api_rate_burst: Annotated[int, msgspec.Meta(ge=1)] = 40
    # How long a key found active is taken on trust without reading it again
    # (services/gateway/key_cache.py): a revocation elsewhere takes up to this long here.
    api_key_cache_seconds: Annotated[float, msgspec.Meta(ge=0, le=60)] = 1.0
    # How far behind the store GET /transactions/{id} may answer (services/gateway/
    # recent_reads.py): polls are answered from a read this recent, refreshed behind them.
    status_max_age_seconds: Annotated[float, msgspec.Meta(ge=0, le=60)] = 1.0
    # How long a submission waits for another one holding its Idempotency-Key to finish
    # before answering 409 IDEMPOTENCY_KEY_IN_USE.
    idempotency_wait_seconds: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    # The unsubscribe links' signing key and where they point (``require_unsubscribe_secret``).
    unsubscribe_secret: UnsubscribeSecret | None = None
    public_base_url: str | None = None
    # After POST /api/v1/webhook-secret/rotate, how long callbacks are signed with the
    # previous secret too (shared/webhook_secrets.py).
    # The platform operator's tenant: its admin keys review every tenant's dead letters and
    # transactions (/api/v1/admin/dead-letters, /admin/transactions); another tenant's admin
    # keys see their own tenant's only. ``make run``'s key is of the tenant ``local``.
    operator_tenant: str = "local"
    webhook_secret_grace_seconds: Annotated[float, msgspec.Meta(ge=0, le=30 * 86_400)] = 86_400.0
    # The SNS webhook (POST /api/v1/webhooks/ses, shared/sns.py). The TopicArns whose
    # messages it takes, comma-separated: empty (the default) refuses every message. The
    # hosts SigningCertURL and SubscribeURL may name: a regex matched against the whole host
    # (plus ``:port`` when the URL has one), SNS's own by default. An extra CA bundle for
    # fetching from them, beside the public ones (a private endpoint, the tests). The default
    # pattern: SNS's own endpoints, sns.<region>.amazonaws.com and .amazonaws.com.cn.
    sns_topic_arns: str = ""
    sns_cert_host_pattern: str = r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?"
    sns_ca_file: str | None = None
    # Networks a callback_url may name by address although they are not public
    # (shared/safe_http.py: loopback, private, link-local...), comma-separated CIDRs such as
    # "127.0.0.0/8,::1/128" for local runs and tests or "10.0.0.0/8" for receivers on a
    # private network; empty (the default): public addresses only. The tracker has the same
    # setting for the connections themselves: give both the same value.
    callback_allowed_networks: str = ""

    def __post_init__(self) -> None:
        """A malformed allow-list stops the start (``SettingsError``), not a callback."""
        parse_networks(self.callback_allowed_networks)


class IngestSettings(CsvSettings, frozen=True, kw_only=True):
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=MAX_BATCH_SIZE)] = 500


class SchedulerSettings(ServiceSettings, frozen=True, kw_only=True):
    pass


class SenderSettings(ServiceSettings, frozen=True, kw_only=True):
    # Unset means the same endpoint as every other AWS service.
    ses_endpoint_url: str | None = None
    ses_from_address: str = "campaigns@example.com"
    ses_configuration_set: str = "email-platform"
    # SES calls in flight at most; the pacer keeps it near rate x SES latency anyway.
    send_concurrency: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 128
    # Unset means the account's own ceiling, from SES GetAccount.
    ses_max_send_rate: Annotated[float, msgspec.Meta(gt=0)] | None = None
    # At most this many messages claimed, sent and recorded together (one store round trip
    # per phase). Below it a chunk is about a second of the send rate: SENT keeps up at a
    # low rate, and at a high one a whole send batch (500) is one chunk.
    send_chunk_size: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1000
    # How long a claim holds without renewal; a live sender renews it every third of it.
    send_lease_seconds: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    # After a lost attempt's lease ends: how long SES's Send events may take to reach us
    # before a message without a receipt is taken as never sent and sent again.
    send_resolve_grace_seconds: Annotated[float, msgspec.Meta(ge=0)] = 120.0
    # Throttling, 5xx and transport errors: attempts per message, retried in place with
    # exponential backoff and jitter; past them the message FAILS into the dead letters.
    send_retry_attempts: Annotated[int, msgspec.Meta(ge=1)] = 10
    send_retry_max_wait_seconds: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    send_retry_timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 600.0
    # How long SendEmail may take to answer before it counts as unanswered.
    ses_timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    # While SES refuses the whole account: one probe send per replica this often.
    pause_probe_seconds: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    # The unsubscribe links of marketing mail: signing key and the gateway's public base URL
    # (``require_unsubscribe_secret``, ``require_public_base_url``).
    unsubscribe_secret: UnsubscribeSecret | None = None
    public_base_url: str | None = None


class TrackerSettings(ServiceSettings, frozen=True, kw_only=True):
    sqs_queue_url: str | None = None
    # How long after a transaction is SENT its messages without an outcome become EXPIRED
    # (72 h: SES reports a delivery within that). At most 30 days: the SCHEDULES stream
    # keeps the schedule that fires it 37 days.
    delivery_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=30 * 86_400)] = 72 * 3600.0
    sqs_wait_seconds: int = 1
    # Callbacks (services/tracker/callbacks.py, callback_pump.py): how long a receiver may
    # take to answer; the delays before each retry after a failed attempt, in seconds (one
    # more failure past the last dead-letters the callback: ~75 h of retries by default);
    # the most a receiver's Retry-After may hold one back; callbacks in flight at once.
    callback_timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    callback_retry_schedule_seconds: Annotated[
        str, msgspec.Meta(pattern=r"^\s*\d+(\.\d+)?(\s*,\s*\d+(\.\d+)?)*\s*$")
    ] = "5,300,1800,7200,18000,36000,50400,72000,86400"
    callback_retry_after_max_seconds: Annotated[float, msgspec.Meta(gt=0, le=86_400)] = 86_400.0
    callback_concurrency: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 32
    # Networks callback receivers may be on although not public (shared/safe_http.py),
    # comma-separated CIDRs; empty: public addresses only.
    callback_allowed_networks: str = ""
    # The alert rules the tracker evaluates (services/tracker/alerts.py), every
    # alert_interval_seconds: a transaction in ACCEPT or PROCESSING for alert_stuck_seconds;
    # more than alert_failure_rate of the transactions ended in the last alert_window_seconds
    # FAILED; a transaction taking longer than alert_sla_seconds from acceptance (or from
    # its send time) to COMPLETED; a schedule slot firing alert_late_schedule_seconds late.
    alert_interval_seconds: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    alert_stuck_seconds: Annotated[float, msgspec.Meta(gt=0)] = 1800.0
    alert_window_seconds: Annotated[float, msgspec.Meta(gt=0)] = 3600.0
    alert_failure_rate: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.05
    alert_sla_seconds: Annotated[float, msgspec.Meta(gt=0)] = 4 * 3600.0
    alert_late_schedule_seconds: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    # Stuck transactions (services/tracker/recovery.py): one in ACCEPT or PROCESSING with no
    # change and no ingest progress for recover_after_seconds is announced to ingest again,
    # at most recover_max_attempts times (recover_after_seconds apart); then it FAILS.
    recover_after_seconds: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    recover_max_attempts: Annotated[int, msgspec.Meta(ge=0)] = 5

    def __post_init__(self) -> None:
        """A malformed allow-list stops the start (``SettingsError``), not a callback."""
        parse_networks(self.callback_allowed_networks)


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


_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def require_unsubscribe_secret(settings: GatewaySettings | SenderSettings) -> str:
    """The unsubscribe links' signing key, checked at start-up: no secret, no start.

    There is no default on purpose: a default would be a key anyone can read here, and links
    signed with it would let anyone unsubscribe anyone. ``make run`` and the tests make one.
    """
    if settings.unsubscribe_secret is None:
        raise SettingsError(
            f"{type(settings).__name__}: UNSUBSCRIBE_SECRET is not set. The gateway and the "
            "sender must share one secret of at least 32 characters to sign unsubscribe "
            "links; make one with: "
            'python -c "import secrets; print(secrets.token_urlsafe(32))"'
        )
    return settings.unsubscribe_secret


def require_public_base_url(settings: GatewaySettings | SenderSettings) -> str:
    """The gateway's public base URL for the links in mails, checked at start-up: https
    (mail clients and RFC 8058 want it), or http on a loopback host for local runs."""
    url = settings.public_base_url
    name = type(settings).__name__
    if not url:
        raise SettingsError(
            f"{name}: PUBLIC_BASE_URL is not set: the gateway's public https URL, which "
            "unsubscribe links point at (https://mail.example.com)"
        )
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # an unclosed IPv6 bracket
        host = None
    secure = host is not None and (
        parts.scheme == "https" or (parts.scheme == "http" and host in _LOOPBACK_HOSTS)
    )
    if not secure or parts.query or parts.fragment:
        raise SettingsError(
            f"{name}: PUBLIC_BASE_URL {url!r} is not an https base URL without query or "
            "fragment (http is allowed only on a loopback host)"
        )
    return url.rstrip("/")
