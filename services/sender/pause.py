"""Account-wide pause: SES refuses every send (sending paused, account suspended, daily
quota used up), so every replica stops sending until it is cleared, and nothing is lost.

The pause lives in the ``sender`` key-value bucket (key ``paused``) so one replica's
discovery stops them all. While it holds, sends wait; once per ``probe_seconds`` each
replica lets one of them through as a probe: SES accepting it clears the pause for all.
Entering and clearing are recorded in the ``alerts`` collection and announced on
``email.alerts.sending_paused`` (shared/alerts.py), beside the tracker's own rules.
"""

from __future__ import annotations

import asyncio
import time

import msgspec
import structlog
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from shared.alerts import change_alert, firing, load_alert
from shared.broker import Broker
from shared.clock import stored_now
from shared.events import Alert
from shared.metrics import SENDING_PAUSED
from shared.status import AlertState
from shared.store import Store

__all__ = ["RULE", "Pause"]

log = structlog.get_logger("sender.pause")

_KEY = "paused"
RULE = "sending_paused"


# The pause in the bucket is the alert itself (``shared.events.Alert``).
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Alert)


class Pause:
    def __init__(
        self,
        kv: KeyValue,
        broker: Broker,
        store: Store,
        *,
        probe_seconds: float,
        refresh_seconds: float = 1.0,
    ) -> None:
        self.kv = kv
        self.broker = broker
        self.store = store
        self.probe_seconds = probe_seconds
        self.refresh_seconds = refresh_seconds
        self._state: Alert | None = None
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
        now = stored_now()
        alert = Alert(
            rule=RULE,
            state=AlertState.FIRING,
            since=now,
            at=now,
            reason=reason,
            summary=f"SES refuses every send of the account: {reason}",
        )
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
        resolved = msgspec.structs.replace(
            current, state=AlertState.RESOLVED, at=stored_now(), summary="SES sends again"
        )
        await self._announce(resolved)

    async def _current(self, *, fresh: bool = False) -> Alert | None:
        if fresh or time.monotonic() - self._read_at >= self.refresh_seconds:
            try:
                entry = await self.kv.get(_KEY)
                state = _decoder.decode(entry.value) if entry.value else None
            except KeyNotFoundError:
                state = None
            self._set(state)
        return self._state

    def _set(self, state: Alert | None) -> None:
        self._state = state
        self._read_at = time.monotonic()
        SENDING_PAUSED.set(0 if state is None else 1)

    async def _announce(self, alert: Alert) -> None:
        """Record and announce the change, once: two replicas clearing the same pause both
        get here, and the record's conditional update lets one of them through."""
        previous = await load_alert(self.store, RULE)
        if alert.state == AlertState.RESOLVED and (
            previous is None or not firing(previous) or previous.alert.since != alert.since
        ):
            return  # not the pause on record: already resolved, or a newer one
        await change_alert(self.store, self.broker, previous, alert)
