"""Account-wide pause: SES refuses every send (sending paused, account suspended, daily
quota used up), so every replica stops sending until it is cleared, and nothing is lost.

The pause lives in the ``sender`` key-value bucket (key ``paused``) so one replica's
discovery stops them all. While it holds, sends wait; once per ``probe_seconds`` each
replica lets one of them through as a probe: SES accepting it clears the pause for all.
Entering and clearing are announced on ``email.alerts.sending_paused``.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import msgspec
import structlog
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from shared.broker import Broker
from shared.metrics import SENDING_PAUSED
from shared.topology import Subjects

__all__ = ["Pause", "PauseAlert"]

log = structlog.get_logger("sender.pause")

_KEY = "paused"
RULE = "sending_paused"


class PauseAlert(msgspec.Struct, frozen=True, kw_only=True):
    rule: str = RULE
    state: str  # "firing" | "resolved"
    reason: str
    since: datetime
    at: datetime


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(PauseAlert)


class Pause:
    def __init__(
        self, kv: KeyValue, broker: Broker, *, probe_seconds: float, refresh_seconds: float = 1.0
    ) -> None:
        self.kv = kv
        self.broker = broker
        self.probe_seconds = probe_seconds
        self.refresh_seconds = refresh_seconds
        self._state: PauseAlert | None = None
        self._read_at = float("-inf")
        self._probe_at = float("-inf")

    @property
    def active(self) -> bool:
        """Paused, as this replica last read it."""
        return self._state is not None

    async def wait(self) -> None:
        """Return at once when sending is allowed; while paused, return only to make a
        probe (one per replica per ``probe_seconds``)."""
        while await self._current() is not None:
            now = time.monotonic()
            if now - self._probe_at >= self.probe_seconds:
                self._probe_at = now
                return
            await asyncio.sleep(min(self.refresh_seconds, self.probe_seconds))

    async def enter(self, reason: str) -> None:
        current = await self._current(fresh=True)
        if current is not None:
            return
        now = datetime.now(UTC)
        alert = PauseAlert(state="firing", reason=reason, since=now, at=now)
        try:
            await self.kv.create(_KEY, _encoder.encode(alert))
        except KeyWrongLastSequenceError:
            await self._current(fresh=True)  # another send (or replica) paused it first
            return
        self._set(alert)
        self._probe_at = time.monotonic()
        log.error("sending paused", reason=reason)
        await self._announce(alert)

    async def clear(self) -> None:
        current = await self._current(fresh=True)
        if current is None:
            return
        await self.kv.delete(_KEY)
        self._set(None)
        log.warning("sending resumed", reason=current.reason, since=current.since)
        resolved = msgspec.structs.replace(current, state="resolved", at=datetime.now(UTC))
        await self._announce(resolved)

    async def _current(self, *, fresh: bool = False) -> PauseAlert | None:
        if fresh or time.monotonic() - self._read_at >= self.refresh_seconds:
            try:
                entry = await self.kv.get(_KEY)
                state = _decoder.decode(entry.value) if entry.value else None
            except KeyNotFoundError:
                state = None
            self._set(state)
        return self._state

    def _set(self, state: PauseAlert | None) -> None:
        self._state = state
        self._read_at = time.monotonic()
        SENDING_PAUSED.set(0 if state is None else 1)

    async def _announce(self, alert: PauseAlert) -> None:
        await self.broker.publish(
            Subjects.alert(RULE),
            alert,
            msg_id=f"{RULE}:{alert.since.isoformat()}:{alert.state}",
        )
