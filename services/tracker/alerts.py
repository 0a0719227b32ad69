"""The alert rules, evaluated by the tracker itself, so a deployment without Prometheus
still sees them (deploy/prometheus/alerts.yml holds the same rules for Prometheus).

Every ``alert_interval_seconds`` the ``AlertWorker`` first recovers stuck transactions
(services/tracker/recovery.py), then evaluates each rule on the store and records its state
in ``alerts`` -- a change of state is announced on ``email.alerts.<rule>`` once, however
many tracker replicas evaluate it (shared/alerts.py) -- and sets the transaction gauges.

The rules (settings in ``TrackerSettings``):
- ``stuck_processing``: a transaction in ACCEPT or PROCESSING unchanged for
  ``alert_stuck_seconds``.
- ``failure_rate``: of the transactions that ended in the last ``alert_window_seconds``,
  more than ``alert_failure_rate`` FAILED. CANCELLED ones count on neither side: a client
  asked for them, the platform did not fail them.
- ``slow_processing``: a transaction taking over ``alert_sla_seconds`` to COMPLETE -- one
  that completed in the window, or one still open. The clock starts at acceptance, or, for
  a scheduled campaign, when it was released (a campaign waiting for next week is not slow).
- ``late_schedule``: a schedule slot that fired more than ``alert_late_schedule_seconds``
  after its time in the window, or whose time is that far past and has not fired.
- ``stuck_not_recovered``: recovery gave up on a transaction in the window (it FAILED).

Each evaluation is a few indexed queries (``status_updated``, ``status_newest``,
``fired_fire`` in shared/indexes.py), each bounded by a limit: the store scans on broad
queries (ARCHITECTURE §6).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import msgspec
import structlog

from services.tracker.recovery import NOT_RECOVERED, recover_stuck
from shared.alerts import announce_pending, change_alert, firing, list_alerts, refresh_alert
from shared.broker import Broker
from shared.clock import stored_now
from shared.documents import AlertRecord
from shared.errors import RetryableError
from shared.events import Alert, AlertTransaction
from shared.metrics import TX_IN_STATUS, TX_OLDEST_SECONDS
from shared.schedule import IMMEDIATE, shifted
from shared.settings import TrackerSettings
from shared.status import FINAL_TX_STATUSES, AlertState, TxStatus
from shared.store import Store, store_reachable
from shared.transitions import processing_started

__all__ = ["RULES", "AlertLimits", "AlertRules", "AlertWorker", "Verdict", "settle_alerts"]

log = structlog.get_logger("tracker.alerts")


class RULES:
    STUCK_PROCESSING = "stuck_processing"
    FAILURE_RATE = "failure_rate"
    SLOW_PROCESSING = "slow_processing"
    LATE_SCHEDULE = "late_schedule"
    STUCK_NOT_RECOVERED = "stuck_not_recovered"


# Transactions named in an alert, at most; and documents one rule's query reads, at most.
_NAMED = 20
_SCAN = 500
# Unfired slots further in the past than this are not looked at: those of cancelled and
# failed transactions never fire, and must not make the query grow without end.
_UNFIRED_LOOKBACK = timedelta(days=2)
_STUCK = (TxStatus.ACCEPT, TxStatus.PROCESSING)
# Open and on the clock: SCHEDULED waits for its time by design (late_schedule watches it).
_ON_THE_CLOCK = (TxStatus.ACCEPT, TxStatus.PROCESSING, TxStatus.READY_TO_SEND, TxStatus.SENT)
_OPEN = tuple(status for status in TxStatus if status not in FINAL_TX_STATUSES)


class AlertLimits(msgspec.Struct, frozen=True, kw_only=True):
    stuck: timedelta
    window: timedelta
    failure_rate: float
    sla: timedelta
    late_schedule: timedelta

    @classmethod
    def from_settings(cls, settings: TrackerSettings) -> AlertLimits:
        return cls(
            stuck=timedelta(seconds=settings.alert_stuck_seconds),
            window=timedelta(seconds=settings.alert_window_seconds),
            failure_rate=settings.alert_failure_rate,
            sla=timedelta(seconds=settings.alert_sla_seconds),
            late_schedule=timedelta(seconds=settings.alert_late_schedule_seconds),
        )


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    """One rule's finding: firing or not, and what about."""

    rule: str
    firing: bool
    summary: str
    transactions: list[AlertTransaction] = []
    details: dict[str, Any] = {}


def _named(docs: Iterable[dict[str, Any]]) -> list[AlertTransaction]:
    return [AlertTransaction(id=str(d["_id"]), tenant=str(d["tenant"])) for d in docs][:_NAMED]


class AlertRules:
    def __init__(self, store: Store, limits: AlertLimits) -> None:
        self.store = store
        self.limits = limits

    async def evaluate(self, now: datetime) -> list[Verdict]:
        return [
            await self.stuck_processing(now),
            await self.failure_rate(now),
            await self.slow_processing(now),
            await self.late_schedule(now),
            await self.stuck_not_recovered(now),
        ]

    async def stuck_processing(self, now: datetime) -> Verdict:
        cutoff = now - self.limits.stuck
        stuck: list[dict[str, Any]] = []
        for status in _STUCK:
            found = self.store.transactions.find(
                {"status": status, "updated_at": {"$lt": cutoff}},
                {"tenant": 1, "updated_at": 1, "status": 1},
            )
            stuck += [doc async for doc in found.sort("updated_at", 1).limit(_SCAN)]
        stuck.sort(key=lambda d: d["updated_at"])
        minutes = self.limits.stuck.total_seconds() / 60
        return Verdict(
            rule=RULES.STUCK_PROCESSING,
            firing=bool(stuck),
            summary=f"{len(stuck)} transaction(s) in ACCEPT or PROCESSING for over {minutes:g} min",
            transactions=_named(stuck),
            details={
                "count": len(stuck),
                "oldest_since": stuck[0]["updated_at"] if stuck else None,
                "threshold_seconds": self.limits.stuck.total_seconds(),
            },
        )

    async def failure_rate(self, now: datetime) -> Verdict:
        since = now - self.limits.window
        ended = {"updated_at": {"$gte": since}}
        completed = await self.store.transactions.count_documents(
            {"status": TxStatus.COMPLETED, **ended}
        )
        failed = await self.store.transactions.count_documents({"status": TxStatus.FAILED, **ended})
        examples = self.store.transactions.find(
            {"status": TxStatus.FAILED, **ended}, {"tenant": 1}
        ).limit(_NAMED)
        total = completed + failed
        rate = failed / total if total else 0.0
        return Verdict(
            rule=RULES.FAILURE_RATE,
            firing=rate > self.limits.failure_rate,
            summary=(
                f"{failed} of {total} transaction(s) ended in the last "
                f"{self._window_text()} FAILED ({rate:.1%})"
            ),
            transactions=_named([doc async for doc in examples]),
            details={
                "failed": failed,
                "completed": completed,
                "rate": round(rate, 4),
                "threshold": self.limits.failure_rate,
                "window_seconds": self.limits.window.total_seconds(),
            },
        )

    async def slow_processing(self, now: datetime) -> Verdict:
        sla = self.limits.sla
        fields = {"tenant": 1, "created_at": 1, "updated_at": 1, "status_history": 1}
        slow: list[tuple[float, dict[str, Any]]] = []
        for status in _ON_THE_CLOCK:
            found = self.store.transactions.find(
                {"status": status, "created_at": {"$lt": now - sla}}, fields
            )
            async for doc in found.sort("created_at", 1).limit(_SCAN):
                start = _clock_start(doc)
                took = 0.0 if start is None else (now - start).total_seconds()
                if took > sla.total_seconds():
                    slow.append((took, doc))
        done = self.store.transactions.find(
            {"status": TxStatus.COMPLETED, "updated_at": {"$gte": now - self.limits.window}},
            fields,
        )
        async for doc in done.limit(_SCAN * 4):
            start = _clock_start(doc)
            took = 0.0 if start is None else (doc["updated_at"] - start).total_seconds()
            if took > sla.total_seconds():
                slow.append((took, doc))
        slow.sort(key=lambda pair: -pair[0])
        hours = sla.total_seconds() / 3600
        return Verdict(
            rule=RULES.SLOW_PROCESSING,
            firing=bool(slow),
            summary=f"{len(slow)} transaction(s) over the {hours:g} h processing time SLA",
            transactions=_named(doc for _, doc in slow),
            details={
                "count": len(slow),
                "longest_seconds": round(slow[0][0], 1) if slow else None,
                "sla_seconds": sla.total_seconds(),
            },
        )

    async def late_schedule(self, now: datetime) -> Verdict:
        late = self.limits.late_schedule
        late_seconds = late.total_seconds()
        # Fired late, in the window.
        fired = self.store.slots.find(
            {
                "fired_at": {"$gte": now - self.limits.window},
                "lateness_seconds": {"$gt": late_seconds},
            },
            {"transaction_id": 1, "slot": 1, "lateness_seconds": 1},
        )
        fired_late = [doc async for doc in fired.limit(_SCAN)]
        # Not fired, its time that far past (the transaction's reschedules moved it).
        waiting = self.store.slots.find(
            {"fired_at": None, "fire_at": {"$lt": now - late, "$gte": now - _UNFIRED_LOOKBACK}},
            {"transaction_id": 1, "slot": 1, "fire_at": 1},
        )
        unfired = [doc async for doc in waiting.limit(_SCAN) if doc["slot"] != IMMEDIATE]
        ids = list({doc["transaction_id"] for doc in (*fired_late, *unfired)})
        txs = {
            doc["_id"]: doc
            async for doc in self.store.transactions.find(
                {"_id": {"$in": ids}}, {"tenant": 1, "status": 1, "schedule": 1}
            )
        }
        overdue = []
        for doc in unfired:
            tx = txs.get(doc["transaction_id"])
            if tx is None or tx["status"] in FINAL_TX_STATUSES:
                continue  # cancelled or failed: it never fires, and rightly so
            shift = float((tx.get("schedule") or {}).get("shift_seconds", 0.0))
            overdue_by = (now - shifted(doc["fire_at"], shift)).total_seconds()
            if overdue_by > late_seconds:
                overdue.append(doc | {"overdue_seconds": round(overdue_by, 1)})
        named = [
            txs[tx_id]
            for tx_id in dict.fromkeys(d["transaction_id"] for d in (*overdue, *fired_late))
            if tx_id in txs
        ]
        return Verdict(
            rule=RULES.LATE_SCHEDULE,
            firing=bool(overdue or fired_late),
            summary=(
                f"{len(fired_late)} slot(s) fired over {late_seconds:g} s late in the last "
                f"{self._window_text()}; {len(overdue)} past their time and not fired"
            ),
            transactions=_named(named),
            details={
                "fired_late": len(fired_late),
                "not_fired": len(overdue),
                "worst_lateness_seconds": max(
                    [d["lateness_seconds"] for d in fired_late]
                    + [d["overdue_seconds"] for d in overdue],
                    default=None,
                ),
                "threshold_seconds": late_seconds,
            },
        )

    async def stuck_not_recovered(self, now: datetime) -> Verdict:
        found = self.store.transactions.find(
            {
                "status": TxStatus.FAILED,
                "updated_at": {"$gte": now - self.limits.window},
                "failure.code": NOT_RECOVERED,
            },
            {"tenant": 1},
        )
        given_up = [doc async for doc in found.limit(_SCAN)]
        return Verdict(
            rule=RULES.STUCK_NOT_RECOVERED,
            firing=bool(given_up),
            summary=(
                f"{len(given_up)} stuck transaction(s) FAILED in the last "
                f"{self._window_text()}: recovery gave up"
            ),
            transactions=_named(given_up),
            details={"count": len(given_up)},
        )

    async def set_gauges(self, now: datetime) -> None:
        """How many transactions are in each open status, and the oldest one's time in it
        (since its last change: ``updated_at``)."""
        for status in _OPEN:
            TX_IN_STATUS.labels(status).set(
                await self.store.transactions.count_documents({"status": status})
            )
            oldest = await self.store.transactions.find_one(
                {"status": status}, {"updated_at": 1}, sort=[("updated_at", 1)]
            )
            age = 0.0 if oldest is None else (now - oldest["updated_at"]).total_seconds()
            TX_OLDEST_SECONDS.labels(status).set(max(0.0, age))

    def _window_text(self) -> str:
        return f"{self.limits.window.total_seconds() / 60:g} min"


def _clock_start(doc: dict[str, Any]) -> datetime | None:
    history = ((e["status"], e["at"]) for e in doc.get("status_history", []))
    return processing_started(history, doc["created_at"])


async def settle_alerts(
    store: Store, broker: Broker, verdicts: list[Verdict], now: datetime
) -> int:
    """Record each verdict as its rule's state; returns how many changes this call made
    (and announced). A rule that never fired has no record until it does."""
    records = {record.id: record for record in await list_alerts(store)}
    await announce_pending(store, broker, list(records.values()))
    changes = 0
    for verdict in verdicts:
        previous = records.get(verdict.rule)
        was_firing = firing(previous)
        if verdict.firing == was_firing:
            if previous is not None and was_firing:
                alert = _alert(verdict, previous, now)
                if _details(alert) != _details(previous.alert):
                    await refresh_alert(store, previous, alert)
            continue
        if previous is None and not verdict.firing:
            continue
        alert = _alert(verdict, previous, now)
        if await change_alert(store, broker, previous, alert):
            changes += 1
            log.warning(
                "alert " + alert.state, rule=alert.rule, summary=alert.summary, since=alert.since
            )
    return changes


def _details(alert: Alert) -> tuple[object, ...]:
    return (alert.summary, alert.transactions, alert.details)


def _alert(verdict: Verdict, previous: AlertRecord | None, now: datetime) -> Alert:
    if verdict.firing:
        since = previous.alert.since if firing(previous) and previous is not None else now
        state = AlertState.FIRING
    else:
        # Resolved: it keeps the start of the spell it ends.
        assert previous is not None
        since = previous.alert.since
        state = AlertState.RESOLVED
    return Alert(
        rule=verdict.rule,
        state=state,
        since=since,
        at=now if previous is None or firing(previous) != verdict.firing else previous.alert.at,
        summary=verdict.summary,
        transactions=verdict.transactions,
        details=verdict.details,
    )


class AlertWorker:
    """A Worker: every ``interval``, recovery of stuck transactions, then the rules."""

    def __init__(self, store: Store, broker: Broker, settings: TrackerSettings) -> None:
        self.store = store
        self.broker = broker
        self.settings = settings
        self.rules = AlertRules(store, AlertLimits.from_settings(settings))
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.tick()
            except RetryableError as e:
                log.warning("alert evaluation failed; next interval", error=repr(e))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.settings.alert_interval_seconds)

    async def tick(self) -> int:
        """One round: recovery, the rules, the gauges; returns how many alerts changed."""
        now = stored_now()
        with store_reachable("alert evaluation"):
            await recover_stuck(
                self.store,
                self.broker,
                now=now,
                after=timedelta(seconds=self.settings.recover_after_seconds),
                max_attempts=self.settings.recover_max_attempts,
            )
            verdicts = await self.rules.evaluate(now)
            changes = await settle_alerts(self.store, self.broker, verdicts, now)
            await self.rules.set_gauges(now)
        return changes
