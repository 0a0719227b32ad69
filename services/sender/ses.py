"""The SES v2 adapter: sends one mail, and sorts every SES failure by what to do about it.

    UpstreamUnavailable (retryable)
    ├── SesThrottled        over the account's sending rate: slow down, retry
    ├── SesPaused           sending paused, account suspended, daily quota used: wait
    └── SesUnanswered       the request went out and no answer came back: SES may have
                            accepted it, so it must not simply be sent again
    PermanentError
    └── SesRejected         this mail can never go: message FAILED, no retry

5xx answers and transport failures are plain ``UpstreamUnavailable``. As GOV.UK Notify's
SES client does, nothing above this module sees a botocore exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError

from services.sender.mime import build_mime
from shared.errors import PermanentError, UpstreamUnavailable
from shared.template import RenderedEmail

if TYPE_CHECKING:
    from types_aiobotocore_sesv2 import SESV2Client
    from types_aiobotocore_sesv2.type_defs import (
        BodyTypeDef,
        EmailContentTypeDef,
        MessageTagTypeDef,
    )

__all__ = ["Ses", "SesPaused", "SesRejected", "SesThrottled", "SesUnanswered"]


class SesThrottled(UpstreamUnavailable):
    pass


class SesPaused(UpstreamUnavailable):
    pass


class SesUnanswered(UpstreamUnavailable):
    pass


class SesRejected(PermanentError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.reason = message


_THROTTLED = frozenset({"TooManyRequestsException", "Throttling", "ThrottlingException"})
_PAUSED = frozenset(
    {"SendingPausedException", "AccountSuspendedException", "LimitExceededException"}
)


def classify(error: ClientError) -> Exception:
    code = error.response.get("Error", {}).get("Code", "")
    message = error.response.get("Error", {}).get("Message", "")
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if "daily message quota" in message.lower():
        # SES answers a used-up 24-hour quota as throttling too; waiting seconds cannot help.
        return SesPaused(f"{code}: {message}")
    if code in _THROTTLED or "Maximum sending rate exceeded" in message:
        return SesThrottled(message or code)
    if code in _PAUSED:
        return SesPaused(f"{code}: {message}")
    if status >= 500 or code in ("InternalServiceErrorException", "InternalFailure"):
        return UpstreamUnavailable(f"SES {status} {code}: {message}")
    return SesRejected(code or str(status), message)


class Ses:
    def __init__(self, client: SESV2Client, from_address: str, configuration_set: str) -> None:
        self.client = client
        self.from_address = from_address
        self.configuration_set = configuration_set

    async def send(
        self,
        to: str,
        mail: RenderedEmail,
        tags: dict[str, str],
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """Send one mail; returns the SES message id.

        With ``headers`` (``List-Unsubscribe``...) the mail goes as Raw MIME content, which
        SES sends as it is: Simple content cannot carry headers of our own. A mail that
        cannot be written as MIME raises ``MimeError`` (permanent).
        """
        content: EmailContentTypeDef
        if headers:
            content = {"Raw": {"Data": build_mime(self.from_address, to, mail, headers)}}
        else:
            body: BodyTypeDef = {}
            if mail.html is not None:
                body["Html"] = {"Data": mail.html, "Charset": "UTF-8"}
            if mail.text is not None:
                body["Text"] = {"Data": mail.text, "Charset": "UTF-8"}
            content = {
                "Simple": {
                    "Subject": {"Data": mail.subject, "Charset": "UTF-8"},
                    "Body": body,
                }
            }
        email_tags: list[MessageTagTypeDef] = [
            {"Name": name, "Value": value} for name, value in tags.items()
        ]
        try:
            response = await self.client.send_email(
                FromEmailAddress=self.from_address,
                Destination={"ToAddresses": [to]},
                Content=content,
                EmailTags=email_tags,
                ConfigurationSetName=self.configuration_set,
            )
        except ClientError as e:
            raise classify(e) from e
        except ReadTimeoutError as e:
            raise SesUnanswered(f"SES did not answer: {e}") from e
        except BotoCoreError as e:
            raise UpstreamUnavailable(f"SES unreachable: {e}") from e
        return response["MessageId"]

    async def max_send_rate(self) -> float:
        try:
            account = await self.client.get_account()
        except ClientError as e:
            raise classify(e) from e
        except BotoCoreError as e:
            raise UpstreamUnavailable(f"SES unreachable: {e}") from e
        return float(account["SendQuota"]["MaxSendRate"])
