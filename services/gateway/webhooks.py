"""``POST /api/v1/webhooks/ses``: SES events that SNS delivers to an HTTPS subscription.

No API key: SNS cannot send one. Every message's signature is checked instead
(``shared.sns``), and only messages of the topics in ``sns_topic_arns`` are taken; with none
configured the endpoint refuses everything. SNS retries a 5xx or no answer, never a 4xx, so:

- not an SNS message: 400 ``SNS_MESSAGE_INVALID``; a topic we do not accept: 403
  ``SNS_TOPIC_UNKNOWN`` (checked first: a stranger's message costs no certificate fetch);
  a SigningCertURL or SubscribeURL not https on an SNS host: 403 ``SNS_CERT_URL_INVALID``;
  a signature that does not verify: 403 ``SNS_SIGNATURE_INVALID``. Nothing is published.
- ``SubscriptionConfirmation``: confirmed by GETting its SubscribeURL, then 200.
- ``UnsubscribeConfirmation``: logged, 200; we do not subscribe again on our own.
- ``Notification``: its ``Message`` (an SES event, either format) goes onto
  ``email.ses.events`` as one ``SesEvents`` with ``Nats-Msg-Id`` ``sns:<MessageId>``, so a
  message SNS delivers twice is stored once; 200 only after the stream acknowledged it, 503
  when it did not (SNS sends it again). A verified notification that holds no SES event (a
  test message published from the console, say) is logged and answered 200: no retry could
  turn it into one.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

import msgspec
from litestar import Controller, Request, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.status_codes import HTTP_200_OK

from services.gateway.deps import Deps
from services.gateway.errors import ApiError, Code, error_responses
from shared.events import SesEvents
from shared.log import get_logger
from shared.settings import SettingsError
from shared.sns import (
    SnsMessageInvalid,
    SnsNotification,
    SnsRefused,
    SnsSignatureInvalid,
    SnsSubscriptionConfirmation,
    SnsTopicUnknown,
    SnsUnsubscribeConfirmation,
    SnsUrlInvalid,
    SnsVerifier,
    decode_sns_message,
    unwrap_ses_event,
)
from shared.topology import Subjects

if TYPE_CHECKING:
    from shared.settings import GatewaySettings

__all__ = ["WEBHOOK_PATH", "SnsAnswer", "SnsOutcome", "SnsWebhookController", "sns_verifier"]

log = get_logger("gateway.webhooks")

WEBHOOK_PATH: Final = "/api/v1/webhooks/ses"
# An SNS message is at most 256 KiB; its envelope escapes the JSON it carries.
_MAX_BODY_BYTES: Final = 1024 * 1024

_CODES: Final[dict[type[SnsRefused], Code]] = {
    SnsMessageInvalid: Code.SNS_MESSAGE_INVALID,
    SnsTopicUnknown: Code.SNS_TOPIC_UNKNOWN,
    SnsUrlInvalid: Code.SNS_CERT_URL_INVALID,
    SnsSignatureInvalid: Code.SNS_SIGNATURE_INVALID,
}


class SnsOutcome(StrEnum):
    PUBLISHED = "published"  # an SES event, now on email.ses.events
    IGNORED = "ignored"  # a verified notification that holds no SES event
    CONFIRMED = "confirmed"  # the subscription is confirmed
    UNSUBSCRIBED = "unsubscribed"  # noted; nothing to do


class SnsAnswer(msgspec.Struct, frozen=True, kw_only=True):
    outcome: SnsOutcome


def sns_verifier(settings: GatewaySettings) -> SnsVerifier:
    """The verifier the settings describe; a pattern or CA file that does not load stops
    the start (``SettingsError``)."""
    topics = [arn.strip() for arn in settings.sns_topic_arns.split(",") if arn.strip()]
    try:
        return SnsVerifier(
            topics=topics,
            host_pattern=settings.sns_cert_host_pattern,
            ca_file=settings.sns_ca_file,
        )
    except (OSError, re.error) as e:  # a missing or unreadable CA file; a bad regex
        raise SettingsError(f"GatewaySettings: SNS_CERT_HOST_PATTERN or SNS_CA_FILE: {e}") from e


def provide_sns_verifier(state: State) -> SnsVerifier:
    verifier: SnsVerifier = state.sns_verifier
    return verifier


Verifier = NamedDependency[SnsVerifier]


def _refused(e: SnsRefused) -> ApiError:
    code = next(code for kind, code in _CODES.items() if isinstance(e, kind))
    return ApiError(code, str(e))


class SnsWebhookController(Controller):
    path = WEBHOOK_PATH
    tags = ["webhooks"]  # noqa: RUF012 -- Litestar's declared attribute type is a list
    dependencies = {  # noqa: RUF012 -- as above
        "sns_verifier": Provide(provide_sns_verifier, sync_to_thread=False)
    }

    @post(
        "/",
        status_code=HTTP_200_OK,
        summary="Amazon SNS HTTPS subscription for SES events",
        description=(
            "Takes SNS `Notification`s whose `Message` is an SES event (configuration-set "
            "event publishing or identity notifications) and publishes it for the tracker; "
            "confirms `SubscriptionConfirmation`s. No API key: every message's SNS signature "
            "is verified and its `TopicArn` must be one of `sns_topic_arns`. SNS sends the "
            "body as `text/plain`."
        ),
        request_max_body_size=_MAX_BODY_BYTES,
        responses=error_responses(
            Code.SNS_MESSAGE_INVALID,
            Code.SNS_TOPIC_UNKNOWN,
            Code.SNS_CERT_URL_INVALID,
            Code.SNS_SIGNATURE_INVALID,
            Code.PAYLOAD_TOO_LARGE,
            authenticated=False,
        ),
    )
    async def receive(
        self, request: Request[Any, Any, Any], deps: Deps, sns_verifier: Verifier
    ) -> SnsAnswer:
        try:
            message = decode_sns_message(await request.body())
            await sns_verifier.verify(message)
        except SnsRefused as e:
            log.warning("sns message refused", reason=type(e).__name__, error=str(e))
            raise _refused(e) from e
        context = {"sns_type": message.TYPE, "sns_message_id": message.message_id}
        match message:
            case SnsNotification():
                event = unwrap_ses_event(message.message)
                if event is None:
                    log.warning(
                        "sns notification holds no SES event; ignored",
                        **context,
                        message=message.message[:200],
                    )
                    return SnsAnswer(outcome=SnsOutcome.IGNORED)
                msg_id = f"sns:{message.message_id}"
                await deps.broker.publish(
                    Subjects.SES_EVENTS, SesEvents(events=[event]), msg_id=msg_id
                )
                log.info("sns notification published", **context, msg_id=msg_id)
                return SnsAnswer(outcome=SnsOutcome.PUBLISHED)
            case SnsSubscriptionConfirmation():
                await sns_verifier.confirm(message)
                log.info("sns subscription confirmed", **context, topic=message.topic_arn)
                return SnsAnswer(outcome=SnsOutcome.CONFIRMED)
            case SnsUnsubscribeConfirmation():
                log.warning("sns subscription ended", **context, topic=message.topic_arn)
                return SnsAnswer(outcome=SnsOutcome.UNSUBSCRIBED)
