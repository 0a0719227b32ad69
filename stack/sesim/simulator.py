"""The simulated SES account: rate ceiling, fault windows, send log, and the events it emits."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from stack.sesim.dispatcher import Dispatcher
from stack.sesim.errors import bad_request, internal_failure, throttled
from stack.sesim.events import Mail, new_ses_message_id, outcome_events, send_event
from stack.sesim.faults import FaultKind, Faults
from stack.sesim.sendlog import SendLog, SendRecord
from stack.sesim.settings import SimSettings
from stack.sesim.shapes import (
    GetAccountResponse,
    SendEmailRequest,
    SendEmailResponse,
    SendQuota,
)
from stack.sesim.throttle import TokenBucket

__all__ = ["MESSAGE_ID_TAG", "Simulator"]

MESSAGE_ID_TAG = "message_id"  # the EmailTag our sender puts on every message


class Simulator:
    def __init__(self, settings: SimSettings, dispatcher: Dispatcher, log: SendLog) -> None:
        self.settings = settings
        self.dispatcher = dispatcher
        self.log = log
        self.faults = Faults()
        self._bucket = TokenBucket(settings.max_send_rate)

    async def send_email(self, request: SendEmailRequest) -> SendEmailResponse:
        """SES v2 SendEmail; raises ``SesError`` exactly where SES would answer with an error."""
        await self._apply_faults()
        simple = request.content.simple
        if simple is None:
            raise bad_request("The simulator accepts Simple content only.")
        if not request.from_email_address:
            raise bad_request("Missing required parameter FromEmailAddress.")
        destination = request.destination.all() if request.destination else []
        if not destination:
            raise bad_request("Missing final '@domain'")  # what SES says for no recipients
        if not self._bucket.try_take():
            raise throttled()

        now = datetime.now(UTC)
        tags = {tag.name: tag.value for tag in request.email_tags}
        mail = Mail(
            ses_message_id=new_ses_message_id(now),
            timestamp=now,
            source=request.from_email_address,
            destination=destination,
            subject=simple.subject.data,
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
            )
        )
        delay = self.settings.event_delay
        self.dispatcher.emit([send_event(mail)])
        self.dispatcher.emit(outcome_events(mail, now + timedelta(seconds=delay)), delay)
        return SendEmailResponse(message_id=mail.ses_message_id)

    async def _apply_faults(self) -> None:
        active = self.faults.active()
        slow = [f.delay for f in active if f.kind is FaultKind.SLOW]
        if slow:
            await asyncio.sleep(max(slow))
        for fault in active:
            if fault.kind is FaultKind.THROTTLE:
                raise throttled()
            if fault.kind is FaultKind.ERROR5XX:
                raise internal_failure(fault.status)

    def account(self) -> GetAccountResponse:
        return GetAccountResponse(
            send_quota=SendQuota(
                max_24_hour_send=self.settings.max_24_hour_send,
                max_send_rate=self.settings.max_send_rate,
                sent_last_24_hours=float(self.log.count_last_day(datetime.now(UTC))),
            )
        )
