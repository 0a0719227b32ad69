"""The simulated SES account: rate ceiling, fault windows, send log, and the events it emits."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated

import msgspec

from stack.sesim.dispatcher import Dispatcher
from stack.sesim.errors import bad_request, internal_failure, sending_paused, throttled
from stack.sesim.events import Mail, new_ses_message_id, outcome_events, send_event
from stack.sesim.faults import FaultKind, Faults
from stack.sesim.raw import read_raw
from stack.sesim.sendlog import SendLog, SendRecord
from stack.sesim.settings import SimSettings
from stack.sesim.shapes import (
    GetAccountResponse,
    SendEmailRequest,
    SendEmailResponse,
    SendQuota,
)
from stack.sesim.throttle import TokenBucket

__all__ = ["MESSAGE_ID_TAG", "QuotaRequest", "Simulator"]

MESSAGE_ID_TAG = "message_id"  # the EmailTag our sender puts on every message


class QuotaRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /_sim/quota``: the account's new maximum send rate, per second."""

    max_send_rate: Annotated[float, msgspec.Meta(gt=0)]


class Simulator:
    def __init__(self, settings: SimSettings, dispatcher: Dispatcher, log: SendLog) -> None:
        self.settings = settings
        self.dispatcher = dispatcher
        self.log = log
        self.faults = Faults()
        self.max_send_rate = settings.max_send_rate
        self._bucket = TokenBucket(settings.max_send_rate)
        self.throttled = 0  # TooManyRequestsException answers, fault windows' included

    def set_max_send_rate(self, rate: float) -> None:
        """A new account ceiling, enforced from now on (a full bucket, as at start-up)."""
        self._bucket = TokenBucket(rate)
        self.max_send_rate = rate

    def reset(self) -> None:
        """Back to the start: no sends, no faults, the configured rate, no throttles."""
        self.log.clear()
        self.faults.clear()
        self.set_max_send_rate(self.settings.max_send_rate)
        self.throttled = 0

    async def send_email(self, request: SendEmailRequest) -> SendEmailResponse:
        """SES v2 SendEmail; raises ``SesError`` exactly where SES would answer with an error."""
        await self._apply_faults()
        simple, raw = request.content.simple, request.content.raw
        source = request.from_email_address
        destination = request.destination.all() if request.destination else []
        headers: dict[str, str] = {}
        if simple is not None:
            subject = simple.subject.data
        elif raw is not None:
            mime = read_raw(raw.data)
            source = source or mime.source
            destination = destination or mime.recipients
            subject, headers = mime.subject, mime.headers
        else:
            raise bad_request("The simulator accepts Simple and Raw content only.")
        if not source:
            raise bad_request("Missing required parameter FromEmailAddress.")
        if not destination:
            raise bad_request("Missing final '@domain'")  # what SES says for no recipients
        if not self._bucket.try_take():
            self.throttled += 1
            raise throttled()

        now = datetime.now(UTC)
        tags = {tag.name: tag.value for tag in request.email_tags}
        mail = Mail(
            ses_message_id=new_ses_message_id(now),
            timestamp=now,
            source=source,
            destination=destination,
            subject=subject,
            tags=tags,
            configuration_set=request.configuration_set_name,
            account_id=self.settings.account_id,
            region=self.settings.aws_region,
        )
        self.log.append(
            SendRecord(
                ses_message_id=mail.ses_message_id,
                message_id=tags.get(MESSAGE_ID_TAG),
                destination=destination,
                source=mail.source,
                subject=mail.subject,
                timestamp=now,
                tags=tags,
                configuration_set=mail.configuration_set,
                headers=headers,
            )
        )
        delay = self.settings.event_delay
        event_mail = mail.as_event_mail()  # one object, shared by this mail's events
        self.dispatcher.emit([send_event(mail, event_mail)])
        at = now + timedelta(seconds=delay)
        self.dispatcher.emit(outcome_events(mail, at, event_mail), delay)
        return SendEmailResponse(message_id=mail.ses_message_id)

    async def _apply_faults(self) -> None:
        active = self.faults.active()
        slow = [f.delay for f in active if f.kind is FaultKind.SLOW]
        if slow:
            await asyncio.sleep(max(slow))
        for fault in active:
            if fault.kind is FaultKind.THROTTLE:
                self.throttled += 1
                raise throttled()
            if fault.kind is FaultKind.ERROR5XX:
                raise internal_failure(fault.status)
            if fault.kind is FaultKind.PAUSED:
                raise sending_paused()

    def account(self) -> GetAccountResponse:
        return GetAccountResponse(
            send_quota=SendQuota(
                max_24_hour_send=self.settings.max_24_hour_send,
                max_send_rate=self.max_send_rate,
                sent_last_24_hours=float(self.log.count_last_day(datetime.now(UTC))),
            )
        )
