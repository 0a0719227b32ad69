"""The Kubernetes side of the settings coverage: every field of a service's settings Struct
(shared/settings.py, as its ``services/<name>/__main__.py`` loads it) is set for its
Deployment, by the ConfigMap it reads through envFrom or by a Secret reference, or is
deliberately left at its default (``DEFAULTED``, each with the reason); and what the
ConfigMap sets loads (``load_settings``) and passes the start-up checks."""

from __future__ import annotations

import pytest

from shared.service import CLOSING_SECONDS, STARTUP_SECONDS
from shared.settings import (
    GatewaySettings,
    SenderSettings,
    load_settings,
    require_public_base_url,
)

from .test_k8s import OVERLAYS, SERVICES, container, objects
from .test_settings_coverage import SETTINGS, settings_fields

_TUNING = "a tuning knob whose default is the measured one; set it in an overlay to change it"
_LIMIT = "a product limit, the same in every deployment"
DEFAULTED: dict[str, str] = {
    "aws_endpoint_url": "unset means real AWS",
    "ses_endpoint_url": "unset means the same endpoint as every AWS service: real SES",
    "ses_max_send_rate": "unset means the account's own ceiling, read from SES GetAccount",
    "sns_ca_file": "the public CAs are enough for SNS's certificates",
    "sns_cert_host_pattern": "SNS's own endpoints",
    **dict.fromkeys(("max_rows", "max_columns", "max_field_chars", "max_schedule_days"), _LIMIT),
    **dict.fromkeys(("upload_part_bytes", "max_upload_bytes"), _LIMIT),
    **dict.fromkeys(("api_rate_per_second", "api_rate_burst"), _LIMIT),
    "idempotency_wait_seconds": _TUNING,
    "api_key_cache_seconds": _TUNING,
    "status_max_age_seconds": _TUNING,
    "webhook_secret_grace_seconds": _LIMIT,
    "batch_size": _TUNING,
    **dict.fromkeys(
        (
            "send_concurrency",
            "send_chunk_size",
            "send_lease_seconds",
            "send_resolve_grace_seconds",
            "send_retry_attempts",
            "send_retry_max_wait_seconds",
            "send_retry_timeout_seconds",
            "ses_timeout_seconds",
            "pause_probe_seconds",
        ),
        _TUNING,
    ),
    "delivery_timeout_seconds": "72 h: SES reports a delivery within that",
    **dict.fromkeys(
        (
            "callback_timeout_seconds",
            "callback_retry_schedule_seconds",
            "callback_retry_after_max_seconds",
            "callback_concurrency",
        ),
        _TUNING,
    ),
    **dict.fromkeys(
        (
            "alert_interval_seconds",
            "alert_stuck_seconds",
            "alert_window_seconds",
            "alert_failure_rate",
            "alert_sla_seconds",
            "alert_late_schedule_seconds",
            "recover_after_seconds",
            "recover_max_attempts",
        ),
        _TUNING,
    ),
}

# Stand-ins for what the Secret references bring, to load the settings with.
_SECRET_VALUES = {
    "MONGODB_URI": "mongodb://user:pass@mongodb-0.mongodb-svc:27017/admin?replicaSet=mongodb",
    "UNSUBSCRIBE_SECRET": "x" * 32,
}


def environment(overlay: str, service: str) -> tuple[dict[str, str], set[str]]:
    """The variables the Deployment's ConfigMap sets, and the names its Secret refs set."""
    configmaps = objects(overlay, "ConfigMap")
    c = container(objects(overlay, "Deployment")[service])
    values: dict[str, str] = {}
    for source in c.get("envFrom", []):
        values |= configmaps[source["configMapRef"]["name"]]["data"]
    secret = set()
    for var in c.get("env", []):
        if "value" in var:
            values[var["name"]] = var["value"]
        elif "configMapKeyRef" in var["valueFrom"]:
            ref = var["valueFrom"]["configMapKeyRef"]
            values[var["name"]] = configmaps[ref["name"]]["data"][ref["key"]]
        else:
            assert "secretKeyRef" in var["valueFrom"], var
            secret.add(var["name"])
    return values, secret


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_every_setting_is_set_or_deliberately_defaulted(overlay: str, service: str) -> None:
    values, secret = environment(overlay, service)
    missing = settings_fields(service) - set(values) - secret - {n.upper() for n in DEFAULTED}
    assert not missing, f"{service}: set these in deploy/k8s or add them to DEFAULTED: {missing}"


def test_defaulted_names_real_fields() -> None:
    every = set().union(*(settings_fields(service) for service in SETTINGS))
    assert not {n.upper() for n in DEFAULTED} - every, "DEFAULTED names a field no service has"


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_configured_settings_load(overlay: str, service: str) -> None:
    values, secret = environment(overlay, service)
    env = values | {name: _SECRET_VALUES[name] for name in secret if name in _SECRET_VALUES}
    settings = load_settings(SETTINGS[service], env)
    assert settings.log_format == "json"
    if isinstance(settings, GatewaySettings):
        assert settings.gateway_host == "0.0.0.0"  # noqa: S104 -- a pod listens on all its addresses
        assert settings.gateway_port == 8000
    else:
        assert settings.ops_host == "0.0.0.0"  # noqa: S104 -- as above
        assert settings.ops_port == 9100
    if isinstance(settings, GatewaySettings | SenderSettings):
        assert settings.unsubscribe_secret is not None
        require_public_base_url(settings)


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_a_stopping_pod_is_done_before_it_is_killed(overlay: str, service: str) -> None:
    """Its grace, the closing of its connections and any preStop sleep fit in
    ``terminationGracePeriodSeconds``; past that, the kubelet sends SIGKILL."""
    values, secret = environment(overlay, service)
    env = values | {name: _SECRET_VALUES[name] for name in secret if name in _SECRET_VALUES}
    settings = load_settings(SETTINGS[service], env)
    pod = objects(overlay, "Deployment")[service]["spec"]["template"]["spec"]
    pre_stop = container(objects(overlay, "Deployment")[service]).get("lifecycle", {})
    sleep = pre_stop.get("preStop", {}).get("sleep", {}).get("seconds", 0)
    needed = settings.shutdown_grace_seconds + CLOSING_SECONDS + sleep
    assert needed < pod["terminationGracePeriodSeconds"], (service, needed)


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_a_starting_pod_waits_for_nats_and_the_store_within_its_startup_probe(
    overlay: str, service: str
) -> None:
    """A start-up waits up to ``STARTUP_SECONDS`` for NATS and the store; the startup probe
    gives it longer, or the kubelet would restart a process about to come up."""
    probe = container(objects(overlay, "Deployment")[service])["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] > STARTUP_SECONDS, service
