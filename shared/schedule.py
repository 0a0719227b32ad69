"""Send times and slots: the rules shared by the gateway, ingest and the scheduler.

A send time may be at most ``max_schedule_days`` ahead and at most ``MAX_PAST`` behind the
time it is judged at; a time between ``now - MAX_PAST`` and ``now`` means "send now".

Rows due in the same UTC minute form one **slot**, named by that minute ("20300131T0900Z");
the rows due at once form the slot ``IMMEDIATE``. A slot fires once, at the latest send time
of its rows rounded up to the second (``fire_time``): never before any of them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final

__all__ = [
    "IMMEDIATE",
    "MAX_PAST",
    "SendAtProblem",
    "check_send_at",
    "fire_time",
    "schedule_stamp",
    "shifted",
    "slot_of",
]

IMMEDIATE: Final = "now"
MAX_PAST: Final = timedelta(minutes=5)


class SendAtProblem(StrEnum):
    """Why a send time cannot be used; the values are the error codes."""

    IN_PAST = "SEND_AT_IN_PAST"
    TOO_FAR = "SEND_AT_TOO_FAR"


def check_send_at(at: datetime, now: datetime, max_days: int) -> SendAtProblem | None:
    if at < now - MAX_PAST:
        return SendAtProblem.IN_PAST
    if at > now + timedelta(days=max_days):
        return SendAtProblem.TOO_FAR
    return None


def slot_of(at: datetime) -> str:
    """The slot of a row due at ``at`` (aware): its UTC minute."""
    return at.astimezone(UTC).strftime("%Y%m%dT%H%MZ")


def fire_time(at: datetime) -> datetime:
    """``at`` in UTC, rounded up to the whole second: a schedule fires at whole seconds."""
    fire = at.astimezone(UTC)
    if fire.microsecond:
        fire = fire.replace(microsecond=0) + timedelta(seconds=1)
    return fire


def shifted(fire_at: datetime, shift_seconds: float) -> datetime:
    """When a slot planned for ``fire_at`` fires after reschedules moved it by
    ``shift_seconds``."""
    return fire_time(fire_at + timedelta(seconds=shift_seconds))


def schedule_stamp(at: datetime) -> str:
    """The ``Nats-Schedule: @at`` time: RFC 3339 in UTC, whole seconds (``fire_time``)."""
    return fire_time(at).strftime("%Y-%m-%dT%H:%M:%SZ")
