"""When a failed callback is tried again: its retry schedule with jitter, and the receiver's
``Retry-After``.

The schedule is ``callback_retry_schedule_seconds`` (5 s, 5 min, 30 min, 2 h, 5 h, 10 h,
14 h, 20 h, 24 h by default: about 75 h in all): after the n-th failed try of a callback
comes the n-th delay, give or take 10 % (jitter: the callbacks one outage of a receiver
failed together do not all come back at once). One more failure past the last delay is the
last: the callback is dead.

A ``Retry-After`` in the answer (delay-seconds, or an HTTP date: RFC 9110 §10.2.3) replaces
the schedule's delay for that one retry, capped at ``callback_retry_after_max_seconds``; one
that cannot be read is ignored. It does not add tries: the schedule still counts this one.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final

import msgspec

from shared.settings import TrackerSettings

__all__ = ["RetryPolicy", "parse_schedule", "retry_after_seconds"]

_JITTER: Final = 0.1


def parse_schedule(text: str) -> tuple[float, ...]:
    """``"5,300,1800"`` as delays in seconds (the setting's pattern has checked the form)."""
    return tuple(float(item) for item in text.split(",") if item.strip())


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """A ``Retry-After`` header as seconds from ``now`` (0 for a date in the past); None when
    there is none or it cannot be read."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        at = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if at.tzinfo is None:  # "-0000": UTC, as HTTP dates are
        at = at.replace(tzinfo=UTC)
    return max(0.0, (at - now).total_seconds())


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    delays: tuple[float, ...]
    retry_after_max: float

    @classmethod
    def from_settings(cls, settings: TrackerSettings) -> RetryPolicy:
        return cls(
            delays=parse_schedule(settings.callback_retry_schedule_seconds),
            retry_after_max=settings.callback_retry_after_max_seconds,
        )

    def delay(self, failures: int, retry_after: float | None) -> float | None:
        """Seconds until the next try after the ``failures``-th failed one in a row; None
        when that was the last."""
        if failures > len(self.delays):
            return None
        if retry_after is not None:
            return min(retry_after, self.retry_after_max)
        planned = self.delays[failures - 1]
        # Not for security: spreading retries needs no cryptographic randomness.
        return planned * random.uniform(1 - _JITTER, 1 + _JITTER)  # noqa: S311
