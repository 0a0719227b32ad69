"""SES events in the configuration-set event publishing format, and their SNS envelope.

Shapes follow the SES developer guide ("Contents of event data that Amazon SES publishes to
Amazon SNS"): ``eventType``, the ``mail`` object with ``tags`` as ``{name: [value]}``, and a
``send`` / ``delivery`` / ``bounce`` / ``complaint`` object. Our tracker maps each event back to
its message through the ``message_id`` tag.
"""

from __future__ import annotations

import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from stack.sesim.mailbox import Outcome, outcome_for

__all__ = [
    "Event",
    "Mail",
    "new_ses_message_id",
    "outcome_events",
    "send_event",
    "sns_envelope",
]

Event = dict[str, Any]

_encoder = msgspec.json.Encoder()
_SIM_IP = "127.0.0.1"
_MTA = "simulator.amazonses.com"


def new_ses_message_id(now: datetime | None = None) -> str:
    """An id shaped like SES's: ``<16 hex of ms time>-<uuid>-000000``."""
    at = now or datetime.now(UTC)
    return f"{int(at.timestamp() * 1000):016x}-{uuid.uuid4()}-000000"


def _feedback_id() -> str:
    return f"{int(time.time() * 1000):016x}-{secrets.token_hex(4)}-{uuid.uuid4()}-000000"


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Mail(msgspec.Struct, frozen=True, kw_only=True):
    """One accepted SendEmail: what every event about it repeats in its ``mail`` object."""

    ses_message_id: str
    timestamp: datetime
    source: str
    destination: list[str]
    subject: str
    tags: dict[str, str]
    configuration_set: str | None
    account_id: str
    region: str

    def as_event_mail(self) -> Event:
        domain = self.source.rpartition("@")[2].rstrip(">")
        tags: dict[str, list[str]] = {
            "ses:operation": ["SendEmail"],
            "ses:source-ip": [_SIM_IP],
            "ses:from-domain": [domain],
            "ses:caller-identity": ["simulator"],
        }
        if self.configuration_set:
            tags["ses:configuration-set"] = [self.configuration_set]
        tags.update({name: [value] for name, value in self.tags.items()})
        return {
            "timestamp": _iso(self.timestamp),
            "source": self.source,
            "sourceArn": f"arn:aws:ses:{self.region}:{self.account_id}:identity/{domain}",
            "sendingAccountId": self.account_id,
            "messageId": self.ses_message_id,
            "destination": list(self.destination),
            "headersTruncated": False,
            "headers": [
                {"name": "From", "value": self.source},
                {"name": "To", "value": ", ".join(self.destination)},
                {"name": "Subject", "value": self.subject},
                {"name": "MIME-Version", "value": "1.0"},
            ],
            "commonHeaders": {
                "from": [self.source],
                "to": list(self.destination),
                "messageId": self.ses_message_id,
                "subject": self.subject,
            },
            "tags": tags,
        }


def send_event(mail: Mail, event_mail: Event | None = None) -> Event:
    """``event_mail``: ``mail.as_event_mail()`` when the caller has it already (one mail's
    events may share that object: it is only ever read)."""
    return {"eventType": "Send", "mail": event_mail or mail.as_event_mail(), "send": {}}


def _delivery(mail: Mail, event_mail: Event, recipients: list[str], at: datetime) -> Event:
    return {
        "eventType": "Delivery",
        "mail": event_mail,
        "delivery": {
            "timestamp": _iso(at),
            "processingTimeMillis": int((at - mail.timestamp).total_seconds() * 1000),
            "recipients": recipients,
            "smtpResponse": "250 2.6.0 Message received",
            "reportingMTA": f"a8-1.smtp-out.{_MTA}",
        },
    }


def _bounce(event_mail: Event, recipients: list[str], at: datetime, *, suppressed: bool) -> Event:
    if suppressed:
        sub_type = "OnAccountSuppressionList"
        diagnostic = (
            "Amazon SES did not send the message to this address because it is on the "
            "suppression list for your account."
        )
        bounced = [{"emailAddress": r} for r in recipients]
    else:
        sub_type = "General"
        diagnostic = "smtp; 550 5.1.1 user unknown"
        bounced = [
            {"emailAddress": r, "action": "failed", "status": "5.1.1", "diagnosticCode": diagnostic}
            for r in recipients
        ]
    return {
        "eventType": "Bounce",
        "mail": event_mail,
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": sub_type,
            "bouncedRecipients": bounced,
            "timestamp": _iso(at),
            "feedbackId": _feedback_id(),
            "reportingMTA": f"dns; {_MTA}",
        },
    }


def _complaint(event_mail: Event, recipients: list[str], at: datetime) -> Event:
    return {
        "eventType": "Complaint",
        "mail": event_mail,
        "complaint": {
            "feedbackId": _feedback_id(),
            "complaintSubType": None,
            "complainedRecipients": [{"emailAddress": r} for r in recipients],
            "timestamp": _iso(at),
            "userAgent": "Amazon SES Mailbox Simulator",
            "complaintFeedbackType": "abuse",
            "arrivalDate": _iso(at),
        },
    }


def outcome_events(mail: Mail, at: datetime, event_mail: Event | None = None) -> list[Event]:
    """The events after Send, in order: what the mailbox simulator reports per recipient."""
    shared = event_mail or mail.as_event_mail()
    by_outcome: dict[Outcome, list[str]] = {}
    for recipient in mail.destination:
        by_outcome.setdefault(outcome_for(recipient), []).append(recipient)
    delivered = by_outcome.get(Outcome.DELIVERY, []) + by_outcome.get(Outcome.COMPLAINT, [])
    events: list[Event] = []
    if delivered:
        events.append(_delivery(mail, shared, delivered, at))
    if bounced := by_outcome.get(Outcome.BOUNCE):
        events.append(_bounce(shared, bounced, at, suppressed=False))
    if suppressed := by_outcome.get(Outcome.SUPPRESSED):
        events.append(_bounce(shared, suppressed, at, suppressed=True))
    if complained := by_outcome.get(Outcome.COMPLAINT):
        events.append(_complaint(shared, complained, at + timedelta(milliseconds=1)))
    return events


def sns_envelope(event: Event, topic_arn: str, now: datetime | None = None) -> str:
    """The SNS Notification that SQS receives for one SES event (raw delivery off)."""
    region = topic_arn.split(":")[3] if topic_arn.count(":") >= 5 else "us-east-1"
    sns = f"https://sns.{region}.amazonaws.com"
    envelope = {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "TopicArn": topic_arn,
        "Message": _encoder.encode(event).decode(),
        "Timestamp": _iso(now or datetime.now(UTC)),
        "SignatureVersion": "1",
        "Signature": "SIMULATED",
        "SigningCertURL": f"{sns}/SimpleNotificationService-simulated.pem",
        "UnsubscribeURL": f"{sns}/?Action=Unsubscribe&SubscriptionArn={topic_arn}:simulated",
    }
    return _encoder.encode(envelope).decode()
