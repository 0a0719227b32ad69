"""``POST /api/v1/webhooks/ses``: SNS messages, signed as SNS signs them, against a real
HTTPS server that plays the SNS host (the signing certificate, the SubscribeURL).

The test makes its own certificate authority, a server certificate for 127.0.0.1 and an SNS
signing certificate; the gateway trusts the authority through ``sns_ca_file`` and takes
``127.0.0.1:<port>`` as an SNS host through ``sns_cert_host_pattern``. The string to sign is
written out here from AWS's description, not taken from ``shared.sns``.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import msgspec
import pytest

from services.gateway.app import create_app
from services.gateway.deps import GatewayDeps
from shared.broker import connect_broker
from shared.events import SesEvents, decoder
from shared.settings import GatewaySettings, SettingsError
from shared.sns import SnsUrlInvalid, check_sns_url
from tests.sns_host import (
    HOST_PATTERN,
    TOPIC,
    FakeSns,
    confirmation,
    new_key,
    notification,
    serve_fake_sns,
    sign,
)
from tests.tracker.tracker_builders import payload

OTHER_TOPIC = "arn:aws:sns:us-east-1:123456789012:someone-elses"
PATH = "/api/v1/webhooks/ses"
STREAM = "SES_EVENTS"


@pytest.fixture(scope="module")
def sns_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeSns]:
    with serve_fake_sns(tmp_path_factory.mktemp("sns")) as sns:
        yield sns


# --- the app ----------------------------------------------------------------------------


@pytest.fixture
def sns_settings(gateway_settings: GatewaySettings, sns_host: FakeSns) -> GatewaySettings:
    return msgspec.structs.replace(
        gateway_settings,
        # Spaces around the commas are allowed.
        sns_topic_arns=f"arn:aws:sns:eu-west-1:123456789012:another , {TOPIC}",
        sns_cert_host_pattern=HOST_PATTERN,
        sns_ca_file=sns_host.ca_file,
    )


@pytest.fixture
async def ses_stream(deps: GatewayDeps) -> GatewayDeps:
    await deps.broker.js.purge_stream(STREAM)
    return deps


@asynccontextmanager
async def webhook(settings: GatewaySettings, deps: GatewayDeps) -> AsyncIterator[httpx.AsyncClient]:
    """The app on the test's loop (``httpx.ASGITransport``), with no API key."""
    transport = httpx.ASGITransport(app=create_app(settings, deps))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        yield client


async def post(client: httpx.AsyncClient, body: dict[str, str] | bytes) -> httpx.Response:
    # As SNS sends it: JSON as text/plain.
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await client.post(
        PATH, content=content, headers={"Content-Type": "text/plain; charset=UTF-8"}
    )


async def stored(deps: GatewayDeps) -> list[tuple[str | None, SesEvents]]:
    """Every message of the SES_EVENTS stream: its Nats-Msg-Id and payload."""
    info = await deps.broker.js.stream_info(STREAM)
    found = []
    if info.state.messages:
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            raw = await deps.broker.js.get_msg(STREAM, seq)
            assert raw.data is not None
            msg_id = (raw.headers or {}).get("Nats-Msg-Id")
            found.append((msg_id, decoder(SesEvents).decode(raw.data)))
    return found


def refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


# --- notifications ----------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "2"])
async def test_notification_is_published_once(
    sns_settings: GatewaySettings, ses_stream: GatewayDeps, sns_host: FakeSns, version: str
) -> None:
    event = payload("event_delivery")
    body = notification(sns_host, event, version=version)
    async with webhook(sns_settings, ses_stream) as client:
        first = await post(client, body)
        # SNS delivers at least once: the same message again is stored once.
        again = await post(client, body)
    assert first.status_code == 200, first.text
    assert first.json() == {"outcome": "published"}
    assert again.status_code == 200, again.text
    assert await stored(ses_stream) == [(f"sns:{body['MessageId']}", SesEvents(events=[event]))]


async def test_identity_notification_with_a_subject(
    sns_settings: GatewaySettings, ses_stream: GatewayDeps, sns_host: FakeSns
) -> None:
    # Identity notifications go through the same topic; a Subject, when there is one, is signed.
    event = payload("notification_bounce")
    body = notification(sns_host, event, version="2", Subject="Amazon SES Email Event")
    async with webhook(sns_settings, ses_stream) as client:
        response = await post(client, body)
        assert response.status_code == 200, response.text
        # The Subject is signed: changing it breaks the signature.
        tampered = notification(sns_host, event, version="2", Subject="Amazon SES Email Event")
        tampered["Subject"] = "Something else"
        refused(await post(client, tampered), 403, "SNS_SIGNATURE_INVALID")
    assert [events.events for _, events in await stored(ses_stream)] == [[event]]


async def test_the_certificate_is_fetched_once(
    sns_settings: GatewaySettings, ses_stream: GatewayDeps, sns_host: FakeSns
) -> None:
    before = sns_host.asked("/SimpleNotificationService-test.pem")
    async with webhook(sns_settings, ses_stream) as client:
        for _ in range(3):
            response = await post(client, notification(sns_host, payload("event_delivery")))
            assert response.status_code == 200, response.text
    assert sns_host.asked("/SimpleNotificationService-test.pem") == before + 1
    assert len(await stored(ses_stream)) == 3


async def test_a_notification_without_an_ses_event_is_ignored(
    sns_settings: GatewaySettings, ses_stream: GatewayDeps, sns_host: FakeSns
) -> None:
    # A test message published from the console: verified, answered 200 (SNS would only send
    # it again), and nothing published.
    async with webhook(sns_settings, ses_stream) as client:
        for message in ("hello from the console", json.dumps({"greeting": "hi"})):
            response = await post(client, notification(sns_host, message))
            assert response.status_code == 200, response.text
            assert response.json() == {"outcome": "ignored"}
    assert await stored(ses_stream) == []


async def test_nats_down_is_503_so_sns_retries(
    sns_settings: GatewaySettings, deps: GatewayDeps, sns_host: FakeSns
) -> None:
    broker = await connect_broker(sns_settings.nats_url, "test-down")
    await broker.nc.close()
    down = GatewayDeps(broker=broker, store=deps.store, s3=deps.s3, settings=sns_settings)
    async with webhook(sns_settings, down) as client:
        response = await post(client, notification(sns_host, payload("event_delivery")))
    refused(response, 503, "SERVICE_UNAVAILABLE")


# --- confirmations ----------------------------------------------------------------------


async def test_subscription_confirmation_gets_the_subscribe_url(
    sns_settings: GatewaySettings, ses_stream: GatewayDeps, sns_host: FakeSns
) -> None:
    body = confirmation(sns_host)
    async with webhook(sns_settings, ses_stream) as client:
        response = await post(client, body)
    assert response.status_code == 200, response.text
    assert response.json() == {"outcome": "confirmed"}
    asked = body["SubscribeURL"].removeprefix(sns_host.base_url)
    assert sns_host.paths.count(asked) == 1
    assert await stored(ses_stream) == []


async def test_unsubscribe_confirmation_is_noted(
    sns_settings: GatewaySettings, ses_stream: GatewayDeps, sns_host: FakeSns
) -> None:
    body = confirmation(sns_host, "UnsubscribeConfirmation")
    async with webhook(sns_settings, ses_stream) as client:
        response = await post(client, body)
    assert response.status_code == 200, response.text
    assert response.json() == {"outcome": "unsubscribed"}
    # We do not subscribe again on our own.
    assert body["SubscribeURL"].removeprefix(sns_host.base_url) not in sns_host.paths


async def test_a_confirmation_pointing_elsewhere_is_refused(
    sns_settings: GatewaySettings, ses_stream: GatewayDeps, sns_host: FakeSns
) -> None:
    body = confirmation(sns_host)
    body["SubscribeURL"] = "https://attacker.example.com/?Action=ConfirmSubscription"
    body = sign(body, sns_host.signing_key)
    asked_before = len(sns_host.paths)
    async with webhook(sns_settings, ses_stream) as client:
        refused(await post(client, body), 403, "SNS_CERT_URL_INVALID")
    assert len(sns_host.paths) == asked_before


# --- refusals ---------------------------------------------------------------------------


def _wrong_key(sns: FakeSns) -> dict[str, str]:
    body = notification(sns, payload("event_delivery"))
    unsigned = {k: v for k, v in body.items() if k not in ("Signature", "SignatureVersion")}
    return sign(unsigned, new_key())


def _tampered(sns: FakeSns) -> dict[str, str]:
    body = notification(sns, payload("event_delivery"))
    event = json.loads(body["Message"])
    event["eventType"] = "Bounce"
    return body | {"Message": json.dumps(event)}


def _unknown_topic(sns: FakeSns) -> dict[str, str]:
    return notification(sns, payload("event_delivery"), TopicArn=OTHER_TOPIC)


def _cert_url(url: Callable[[FakeSns], str]) -> Callable[[FakeSns], dict[str, str]]:
    def make(sns: FakeSns) -> dict[str, str]:
        return notification(sns, payload("event_delivery"), SigningCertURL=url(sns))

    return make


def _at(path: str) -> Callable[[FakeSns], dict[str, str]]:
    return _cert_url(lambda sns: f"{sns.base_url}{path}")


def _signature_version(version: str) -> Callable[[FakeSns], dict[str, str]]:
    def make(sns: FakeSns) -> dict[str, str]:
        return notification(sns, payload("event_delivery")) | {"SignatureVersion": version}

    return make


REFUSALS = {
    "wrong key": (_wrong_key, "SNS_SIGNATURE_INVALID"),
    "tampered message": (_tampered, "SNS_SIGNATURE_INVALID"),
    "unknown topic": (_unknown_topic, "SNS_TOPIC_UNKNOWN"),
    "http cert url": (
        _cert_url(lambda sns: sns.cert_url.replace("https://", "http://")),
        "SNS_CERT_URL_INVALID",
    ),
    "non-SNS host": (
        _cert_url(lambda sns: sns.cert_url.replace("127.0.0.1", "localhost")),
        "SNS_CERT_URL_INVALID",
    ),
    "credentials in the url": (
        _cert_url(lambda sns: sns.cert_url.replace("https://", "https://user@")),
        "SNS_CERT_URL_INVALID",
    ),
    "signature version 3": (_signature_version("3"), "SNS_SIGNATURE_INVALID"),
    "no certificate there": (_at("/missing.pem"), "SNS_SIGNATURE_INVALID"),
    "not a certificate": (_at("/broken.pem"), "SNS_SIGNATURE_INVALID"),
    "a certificate too large": (_at("/huge.pem"), "SNS_SIGNATURE_INVALID"),
    "a redirect": (_at("/redirect.pem"), "SNS_SIGNATURE_INVALID"),
}


@pytest.mark.parametrize(("make", "code"), REFUSALS.values(), ids=REFUSALS.keys())
async def test_refused_and_nothing_published(
    sns_settings: GatewaySettings,
    ses_stream: GatewayDeps,
    sns_host: FakeSns,
    make: Any,
    code: str,
) -> None:
    body = make(sns_host)
    asked_before = len(sns_host.paths)
    async with webhook(sns_settings, ses_stream) as client:
        refused(await post(client, body), 403, code)
    assert await stored(ses_stream) == []
    if code in ("SNS_TOPIC_UNKNOWN", "SNS_CERT_URL_INVALID"):
        # Refused before anything was fetched for it.
        assert len(sns_host.paths) == asked_before


async def test_an_unreachable_certificate_is_503(
    sns_settings: GatewaySettings, ses_stream: GatewayDeps, sns_host: FakeSns
) -> None:
    body = _at("/flaky.pem")(sns_host)
    async with webhook(sns_settings, ses_stream) as client:
        refused(await post(client, body), 503, "SERVICE_UNAVAILABLE")
    assert await stored(ses_stream) == []


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'"a string"',
        json.dumps({"Type": "Notification", "MessageId": "m"}).encode(),
        json.dumps({"Type": "Teleport", "MessageId": "m"}).encode(),
    ],
    ids=["not json", "not an object", "fields missing", "unknown type"],
)
async def test_malformed_bodies_are_400(
    sns_settings: GatewaySettings, ses_stream: GatewayDeps, body: bytes
) -> None:
    async with webhook(sns_settings, ses_stream) as client:
        refused(await post(client, body), 400, "SNS_MESSAGE_INVALID")


async def test_no_topics_configured_refuses_everything(
    sns_settings: GatewaySettings, ses_stream: GatewayDeps, sns_host: FakeSns
) -> None:
    settings = msgspec.structs.replace(sns_settings, sns_topic_arns="")
    async with webhook(settings, ses_stream) as client:
        refused(await post(client, confirmation(sns_host)), 403, "SNS_TOPIC_UNKNOWN")
        body = notification(sns_host, payload("event_delivery"))
        refused(await post(client, body), 403, "SNS_TOPIC_UNKNOWN")
    assert await stored(ses_stream) == []


async def test_it_needs_no_api_key_but_the_api_still_does(
    sns_settings: GatewaySettings, ses_stream: GatewayDeps
) -> None:
    async with webhook(sns_settings, ses_stream) as client:
        template = {"name": "n", "subject": "s", "text": "t"}
        assert (await client.post("/api/v1/templates", json=template)).status_code == 401
        assert (await post(client, b"{}")).status_code == 400  # reached the webhook


@pytest.mark.parametrize(
    "override",
    [{"sns_cert_host_pattern": "(unclosed"}, {"sns_ca_file": "/nonexistent/ca.pem"}],
    ids=["host pattern", "ca file"],
)
def test_bad_sns_settings_stop_the_start(
    gateway_settings: GatewaySettings, override: dict[str, str]
) -> None:
    with pytest.raises(SettingsError, match="SNS_CERT_HOST_PATTERN or SNS_CA_FILE"):
        create_app(msgspec.structs.replace(gateway_settings, **override))


# --- the URL rule, with SNS's own hosts -------------------------------------------------

_SNS = re.compile(GatewaySettings().sns_cert_host_pattern)


@pytest.mark.parametrize(
    "url",
    [
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.eu-central-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.us-gov-west-1.amazonaws.com/x.pem",
        "https://sns.cn-north-1.amazonaws.com.cn/x.pem",
        "https://SNS.us-east-1.amazonaws.com/x.pem",  # hosts are case-insensitive
    ],
)
def test_sns_hosts_are_accepted(url: str) -> None:
    check_sns_url(url, _SNS)


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com.evil.example/x.pem",
        "https://evilsns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com:8443/x.pem",
        "https://sns.us-east-1.amazonaws.com@evil.example/x.pem",
        "https://evil.example/sns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com\\@evil.example/x.pem",
        "https://sns.us-east-1.amazonaws.com /x.pem",
        "https://s3.amazonaws.com/x.pem",
        "https://[::1/x.pem",
        "ftp://sns.us-east-1.amazonaws.com/x.pem",
        "",
    ],
)
def test_other_urls_are_refused(url: str) -> None:
    with pytest.raises(SnsUrlInvalid):
        check_sns_url(url, _SNS)
