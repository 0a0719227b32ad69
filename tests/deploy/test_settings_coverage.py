"""Every variable a service's settings read is set for it in deploy/compose.yaml, or is
listed in DEFAULTED with the reason its default is right there.

``SETTINGS`` and ``settings_fields`` are shared with the Kubernetes side (the ConfigMap's
check, which keeps its own ``DEFAULTED``): a field set nowhere and not deliberately
defaulted is a setting an operator cannot see.
"""

from __future__ import annotations

import msgspec
import pytest

from shared.settings import (
    GatewaySettings,
    IngestSettings,
    SchedulerSettings,
    SenderSettings,
    ServiceSettings,
    TrackerSettings,
)
from tests.deploy.compose_file import service_environment

# As services/*/__main__.py load them.
SETTINGS: dict[str, type[ServiceSettings]] = {
    "gateway": GatewaySettings,
    "ingest": IngestSettings,
    "scheduler": SchedulerSettings,
    "sender": SenderSettings,
    "tracker": TrackerSettings,
}

# Variable names (upper-cased fields) left to their defaults on purpose, with why.
_TUNING = "a tuning knob whose default is the tested value; set it to change it"
DEFAULTED: dict[str, str] = {
    "OPS_HOST": "the image sets it (0.0.0.0); the gateway ignores it",
    "OPS_PORT": "the image sets it (9100, what its HEALTHCHECK asks); the gateway ignores it",
    "GATEWAY_HOST": "the image sets it (0.0.0.0)",
    "GATEWAY_PORT": "the image sets it (8000, what its HEALTHCHECK asks)",
    "UPLOAD_PART_BYTES": _TUNING,
    "MAX_UPLOAD_BYTES": _TUNING,
    "API_RATE_PER_SECOND": _TUNING,
    "API_RATE_BURST": _TUNING,
    "API_KEY_CACHE_SECONDS": _TUNING,
    "STATUS_MAX_AGE_SECONDS": _TUNING,
    "IDEMPOTENCY_WAIT_SECONDS": _TUNING,
    "WEBHOOK_SECRET_GRACE_SECONDS": _TUNING,
    "SNS_CERT_HOST_PATTERN": "SNS's own hosts; only a private SNS-compatible endpoint changes it",
    "SNS_CA_FILE": "the public CAs suffice for SNS; a file path only for a private endpoint",
    "SEND_CONCURRENCY": _TUNING,
    "SES_MAX_SEND_RATE": "unset means the account's own ceiling from SES GetAccount",
    "SEND_CHUNK_SIZE": _TUNING,
    "SEND_LEASE_SECONDS": _TUNING,
    "SEND_RESOLVE_GRACE_SECONDS": _TUNING,
    "SEND_RETRY_ATTEMPTS": _TUNING,
    "SEND_RETRY_MAX_WAIT_SECONDS": _TUNING,
    "SEND_RETRY_TIMEOUT_SECONDS": _TUNING,
    "SES_TIMEOUT_SECONDS": _TUNING,
    "PAUSE_PROBE_SECONDS": _TUNING,
    "DELIVERY_TIMEOUT_SECONDS": "72 h: SES reports a delivery within that",
    "SQS_WAIT_SECONDS": _TUNING,
    "CALLBACK_TIMEOUT_SECONDS": _TUNING,
    "CALLBACK_RETRY_SCHEDULE_SECONDS": _TUNING,
    "CALLBACK_RETRY_AFTER_MAX_SECONDS": _TUNING,
    "CALLBACK_CONCURRENCY": _TUNING,
    "ALERT_INTERVAL_SECONDS": _TUNING,
    "ALERT_STUCK_SECONDS": _TUNING,
    "ALERT_WINDOW_SECONDS": _TUNING,
    "ALERT_FAILURE_RATE": _TUNING,
    "ALERT_SLA_SECONDS": _TUNING,
    "ALERT_LATE_SCHEDULE_SECONDS": _TUNING,
    "RECOVER_AFTER_SECONDS": _TUNING,
    "RECOVER_MAX_ATTEMPTS": _TUNING,
}


def settings_fields(service: str) -> set[str]:
    """The environment variables ``service``'s settings read (shared/settings.py)."""
    return {field.name.upper() for field in msgspec.structs.fields(SETTINGS[service])}


def test_every_defaulted_variable_is_a_real_setting() -> None:
    every = set().union(*(settings_fields(s) for s in SETTINGS))
    assert set(DEFAULTED) <= every, set(DEFAULTED) - every
    assert all(reason.strip() for reason in DEFAULTED.values())


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_compose_sets_or_deliberately_defaults_every_setting(service: str) -> None:
    environment = set(service_environment(service))
    missing = settings_fields(service) - environment - set(DEFAULTED)
    assert not missing, f"{service}: set these in deploy/compose.yaml or add to DEFAULTED"
