"""SES v2 request and response bodies, as botocore's ``sesv2`` model names them.

Requests tolerate unknown fields: they are valid SES fields the simulator does not model
(``ReplyToAddresses``, ``ListManagementOptions``, ...), not mistakes.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "Body",
    "Content",
    "Destination",
    "EmailContent",
    "GetAccountResponse",
    "MessageTag",
    "RawMessage",
    "SendEmailRequest",
    "SendEmailResponse",
    "SendQuota",
    "SimpleMessage",
]


class _Shape(msgspec.Struct, frozen=True, kw_only=True, rename="pascal"):
    pass


class Content(_Shape, frozen=True):
    data: str
    charset: str | None = None


class Body(_Shape, frozen=True):
    text: Content | None = None
    html: Content | None = None


class SimpleMessage(_Shape, frozen=True):
    subject: Content
    body: Body


class RawMessage(_Shape, frozen=True):
    data: bytes  # the MIME message; base64 in the JSON, decoded here


class EmailContent(_Shape, frozen=True):
    simple: SimpleMessage | None = None
    raw: RawMessage | None = None
    template: dict[str, object] | None = None


class Destination(_Shape, frozen=True):
    to_addresses: list[str] = []
    cc_addresses: list[str] = []
    bcc_addresses: list[str] = []

    def all(self) -> list[str]:
        return [*self.to_addresses, *self.cc_addresses, *self.bcc_addresses]


class MessageTag(_Shape, frozen=True):
    name: str
    value: str


class SendEmailRequest(_Shape, frozen=True):
    content: EmailContent
    from_email_address: str | None = None
    destination: Destination | None = None
    email_tags: list[MessageTag] = []
    configuration_set_name: str | None = None


class SendEmailResponse(_Shape, frozen=True):
    message_id: str


class SendQuota(_Shape, frozen=True):
    max_24_hour_send: float = msgspec.field(name="Max24HourSend")
    max_send_rate: float
    sent_last_24_hours: float = msgspec.field(name="SentLast24Hours")


class GetAccountResponse(_Shape, frozen=True):
    send_quota: SendQuota
    sending_enabled: bool = True
    production_access_enabled: bool = True
    dedicated_ip_auto_warmup_enabled: bool = False
    enforcement_status: str = "HEALTHY"
    suppression_attributes: dict[str, object] = msgspec.field(
        default_factory=lambda: {"SuppressedReasons": ["BOUNCE", "COMPLAINT"]}
    )
    details: dict[str, object] = msgspec.field(
        default_factory=lambda: {
            "MailType": "TRANSACTIONAL",
            "WebsiteURL": "https://example.com",
            "ContactLanguage": "EN",
            "ReviewDetails": {"Status": "GRANTED", "CaseId": "simulator"},
        }
    )
