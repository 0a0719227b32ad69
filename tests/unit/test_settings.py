"""``load_settings``: every field from its upper-cased variable, converted, or a
``SettingsError`` naming the field; nothing else in the environment matters."""

from __future__ import annotations

import msgspec
import pytest

from shared import settings as settings_module
from shared.settings import (
    CsvSettings,
    GatewaySettings,
    IngestSettings,
    SchedulerSettings,
    SenderSettings,
    ServiceSettings,
    SettingsError,
    TrackerSettings,
    load_settings,
)

ALL_KINDS: tuple[type[ServiceSettings], ...] = (
    ServiceSettings,
    CsvSettings,
    GatewaySettings,
    IngestSettings,
    SchedulerSettings,
    SenderSettings,
    TrackerSettings,
)


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda k: k.__name__)
def test_an_empty_environment_gives_the_defaults(kind: type[ServiceSettings]) -> None:
    assert load_settings(kind, {}) == kind()


def test_the_defaults() -> None:
    loaded = load_settings(SenderSettings, {})
    assert loaded.nats_url == "nats://127.0.0.1:4222"
    assert loaded.mongodb_db == "email_platform"
    assert loaded.aws_endpoint_url is None
    assert loaded.log_format == "auto"
    assert loaded.concurrency == 8
    assert loaded.ses_endpoint_url is None
    assert loaded.send_concurrency == 128
    assert loaded.ses_max_send_rate is None
    assert loaded.send_lease_seconds == 60.0


def test_values_are_converted_to_the_field_types() -> None:
    loaded = load_settings(
        TrackerSettings,
        {
            "NATS_URL": "nats://nats.internal:4222",
            "CONCURRENCY": "3",
            "LOG_FORMAT": "json",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
            "SQS_QUEUE_URL": "http://127.0.0.1:5000/123/events",
            "SQS_WAIT_SECONDS": "20",
            "CALLBACK_TIMEOUT_SECONDS": "2.5",
        },
    )
    assert loaded.nats_url == "nats://nats.internal:4222"
    assert loaded.concurrency == 3
    assert type(loaded.concurrency) is int
    assert loaded.log_format == "json"
    assert loaded.aws_endpoint_url == "http://127.0.0.1:5000"
    assert loaded.sqs_queue_url == "http://127.0.0.1:5000/123/events"
    assert loaded.sqs_wait_seconds == 20
    assert loaded.callback_timeout_seconds == 2.5
    assert type(loaded.callback_timeout_seconds) is float


def test_an_optional_float_converts_when_set() -> None:
    loaded = load_settings(SenderSettings, {"SES_MAX_SEND_RATE": "14.5"})
    assert loaded.ses_max_send_rate == 14.5


@pytest.mark.parametrize("value", ["auto", "json", "console"])
def test_every_log_format_is_accepted(value: str) -> None:
    assert load_settings(ServiceSettings, {"LOG_FORMAT": value}).log_format == value


def test_a_subclass_reads_common_and_own_fields() -> None:
    loaded = load_settings(
        SenderSettings,
        {
            "MONGODB_DB": "campaigns",
            "S3_BUCKET": "uploads-prod",
            "SES_FROM_ADDRESS": "news@example.org",
            "SEND_CONCURRENCY": "4",
            "SES_ENDPOINT_URL": "http://127.0.0.1:9000",
        },
    )
    assert isinstance(loaded, SenderSettings)
    assert (loaded.mongodb_db, loaded.s3_bucket) == ("campaigns", "uploads-prod")
    assert loaded.ses_from_address == "news@example.org"
    assert loaded.send_concurrency == 4
    assert loaded.ses_endpoint_url == "http://127.0.0.1:9000"
    # What was not set keeps its default, common or own.
    assert loaded.aws_region == "us-east-1"
    assert loaded.ses_configuration_set == "email-platform"


def test_a_service_reads_only_its_own_fields() -> None:
    env = {"GATEWAY_PORT": "9001", "BATCH_SIZE": "50", "CONCURRENCY": "2"}
    gateway = load_settings(GatewaySettings, env)
    ingest = load_settings(IngestSettings, env)
    assert (gateway.gateway_port, gateway.concurrency) == (9001, 2)
    assert (ingest.batch_size, ingest.concurrency) == (50, 2)
    assert not hasattr(gateway, "batch_size")
    assert not hasattr(ingest, "gateway_port")


@pytest.mark.parametrize(
    ("kind", "env", "field"),
    [
        (ServiceSettings, {"CONCURRENCY": "many"}, "concurrency"),
        (ServiceSettings, {"CONCURRENCY": "1.5"}, "concurrency"),
        (ServiceSettings, {"LOG_FORMAT": "xml"}, "log_format"),
        (SenderSettings, {"SES_MAX_SEND_RATE": "fast"}, "ses_max_send_rate"),
        (SenderSettings, {"SEND_LEASE_SECONDS": "five minutes"}, "send_lease_seconds"),
        (GatewaySettings, {"GATEWAY_PORT": "http"}, "gateway_port"),
        (TrackerSettings, {"SQS_WAIT_SECONDS": "soon"}, "sqs_wait_seconds"),
    ],
)
def test_a_value_that_does_not_convert_names_the_field(
    kind: type[ServiceSettings], env: dict[str, str], field: str
) -> None:
    with pytest.raises(SettingsError, match=field) as raised:
        load_settings(kind, {"NATS_URL": "nats://x:4222", **env})
    assert kind.__name__ in str(raised.value)
    assert isinstance(raised.value.__cause__, msgspec.ValidationError)


def test_a_settings_error_is_a_value_error() -> None:
    assert issubclass(SettingsError, ValueError)


def test_unrelated_variables_are_ignored() -> None:
    env = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "BATCH_SIZE": "not a number",  # IngestSettings' field, not the sender's
        "nats_url": "nats://lower-case:4222",  # only the upper-cased name counts
        "NATS_URL_EXTRA": "nats://other:4222",
    }
    assert load_settings(SenderSettings, env) == SenderSettings()


def test_the_process_environment_is_read_when_none_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BATCH_SIZE", "77")
    monkeypatch.setenv("MONGODB_DB", "from_os_environ")
    loaded = load_settings(IngestSettings)
    assert (loaded.batch_size, loaded.mongodb_db) == (77, "from_os_environ")


def test_every_settings_struct_is_frozen_and_keyword_only() -> None:
    exported = {
        getattr(settings_module, name)
        for name in settings_module.__all__
        if isinstance(getattr(settings_module, name), type)
        and issubclass(getattr(settings_module, name), msgspec.Struct)
    }
    assert exported == set(ALL_KINDS)
    for kind in ALL_KINDS:
        config = kind.__struct_config__
        assert config.frozen, kind.__name__
        with pytest.raises(TypeError):
            kind("nats://positional:4222")  # type: ignore[call-arg]
        loaded = load_settings(kind, {})
        with pytest.raises(AttributeError):
            loaded.concurrency = 1  # type: ignore[misc]


def test_an_empty_variable_counts_as_unset() -> None:
    settings = load_settings(SenderSettings, {"AWS_ENDPOINT_URL": "", "CONCURRENCY": ""})
    assert settings.aws_endpoint_url is None
    assert settings.concurrency == 8


@pytest.mark.parametrize("value", ["0", "-3"])
def test_concurrency_must_be_positive(value: str) -> None:
    with pytest.raises(SettingsError, match="concurrency"):
        load_settings(SenderSettings, {"CONCURRENCY": value})
