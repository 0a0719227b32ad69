"""Fault windows opened by tests: throttling, 5xx answers, slow answers, for some seconds."""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

import msgspec

__all__ = ["FaultKind", "FaultRequest", "Faults"]


class FaultKind(StrEnum):
    THROTTLE = "throttle"  # 429 TooManyRequestsException on every send
    ERROR5XX = "error5xx"  # 500 InternalFailure (or 503 ServiceUnavailable) on every send
    SLOW = "slow"  # every send answers after ``delay`` seconds
    PAUSED = "paused"  # 400 SendingPausedException: the account's sending is paused


class FaultRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /_sim/faults``."""

    kind: FaultKind
    seconds: float = 60.0
    delay: float = 1.0  # for SLOW
    status: int = 500  # for ERROR5XX: 500 or 503


class _Window(msgspec.Struct, frozen=True, kw_only=True):
    fault: FaultRequest
    until: float


class Faults:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: list[_Window] = []

    def open(self, fault: FaultRequest) -> None:
        self._windows.append(_Window(fault=fault, until=self._clock() + fault.seconds))

    def clear(self) -> None:
        self._windows.clear()

    def active(self) -> list[FaultRequest]:
        now = self._clock()
        self._windows = [w for w in self._windows if w.until > now]
        return [w.fault for w in self._windows]

    def describe(self) -> list[dict[str, object]]:
        now = self._clock()
        return [
            {**msgspec.structs.asdict(w.fault), "remaining": round(w.until - now, 3)}
            for w in self._windows
            if w.until > now
        ]
