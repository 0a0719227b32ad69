"""A campaign's progress as rich bars, one per phase, drawn from the transaction record.

The record is ``GET /api/v1/transactions/{id}`` as the gateway answers it; each poll moves
the bars, and rich derives the rate and the time remaining from how fast they move:

- ingest: the rows of the file read so far (``ingest_progress``: valid + invalid). How many
  rows the file has is known only once ingest has read it all, so the bar has no end until
  then (the ``total`` counter is set when ingest hands over).
- sending: the messages the sender is done with (every message no longer waiting: not
  SCHEDULED, READY_TO_SEND nor SENDING), of ``total``.
- outcomes: the messages with a final status, of ``total``.

On a terminal the bars redraw in place; anywhere else (a pipe, a file, a test) rich draws
them once, as plain lines, when the display stops, so captured output is deterministic.
"""

from __future__ import annotations

from datetime import datetime
from types import TracebackType
from typing import Any, Final

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from shared.status import FINAL_MESSAGE_STATUSES, FINAL_TX_STATUSES, MessageStatus, TxStatus

__all__ = ["PhaseBars", "RateColumn", "phase_counts", "phase_rates"]

_FINAL_KEYS: Final = tuple(sorted(status.lower() for status in FINAL_MESSAGE_STATUSES))
_WAITING_KEYS: Final = tuple(
    status.lower()
    for status in (MessageStatus.SCHEDULED, MessageStatus.READY_TO_SEND, MessageStatus.SENDING)
)
# Ingest is over (the ``total`` counter holds) once the transaction is past PROCESSING.
_INGESTING: Final = frozenset({TxStatus.ACCEPT, TxStatus.PROCESSING})

PHASES: Final = ("ingest", "sending", "outcomes")
_LABELS: Final = {
    "ingest": "ingest: rows read",
    "sending": "sending: messages sent",
    "outcomes": "outcomes: final",
}


class RateColumn(ProgressColumn):
    """Items per second (rich's ``TransferSpeedColumn`` counts bytes): a finished phase's
    from the record's own timestamps, else rich's estimate from the polls."""

    def render(self, task: Task) -> Text:
        speed = task.fields.get("rate") or task.finished_speed or task.speed
        if speed is None:
            return Text("-/s", style="progress.data.speed")
        shown = f"{speed:,.0f}" if speed >= 10 else f"{speed:.1f}"
        return Text(f"{shown}/s", style="progress.data.speed")


def phase_counts(record: dict[str, Any]) -> dict[str, tuple[int, int | None]]:
    """Per phase, ``(completed, total)``; ``total`` is None while it is not known yet."""
    status = TxStatus(record["status"])
    counters: dict[str, int] = record.get("counters") or {}
    read = sum((record.get("ingest_progress") or {}).values())
    total = counters.get("total", 0)
    if status in _INGESTING:
        return {"ingest": (read, None), "sending": (0, None), "outcomes": (0, None)}
    rows = max(read, total + counters.get("invalid", 0))
    waiting = sum(counters.get(key, 0) for key in _WAITING_KEYS)
    return {
        "ingest": (rows, rows),
        "sending": (max(0, total - waiting), total),
        "outcomes": (sum(counters.get(key, 0) for key in _FINAL_KEYS), total),
    }


def phase_rates(record: dict[str, Any]) -> dict[str, float]:
    """Per finished phase, its items per second between the statuses that bound it, so a
    campaign shorter than a poll still shows its rate."""
    at: dict[str, datetime] = {}
    after_processing: datetime | None = None
    for entry in record.get("status_history") or ():
        stamp = datetime.fromisoformat(entry["timestamp"])
        at.setdefault(entry["status"], stamp)
        if TxStatus.PROCESSING in at and entry["status"] != TxStatus.PROCESSING:
            after_processing = after_processing or stamp
    spans = {
        "ingest": (at.get(TxStatus.PROCESSING), after_processing),
        "sending": (at.get(TxStatus.READY_TO_SEND), at.get(TxStatus.SENT)),
        "outcomes": (at.get(TxStatus.READY_TO_SEND), at.get(TxStatus.COMPLETED)),
    }
    rates: dict[str, float] = {}
    for phase, (completed, _) in phase_counts(record).items():
        start, end = spans[phase]
        if start is not None and end is not None and end > start and completed:
            rates[phase] = completed / (end - start).total_seconds()
    return rates


class PhaseBars:
    """The three bars on ``console``; ``update(record)`` after each poll."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.description:<24}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            RateColumn(),
            TimeRemainingColumn(),
            console=console,
            # Twice a second is as often as the polls bring news.
            refresh_per_second=2,
        )
        self.tasks: dict[str, TaskID] = {
            phase: self.progress.add_task(_LABELS[phase], total=None, start=False)
            for phase in PHASES
        }

    @property
    def console(self) -> Console:
        return self.progress.console

    def __enter__(self) -> PhaseBars:
        self.progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.progress.stop()

    def update(self, record: dict[str, Any]) -> None:
        status = TxStatus(record["status"])
        seen = {entry["status"] for entry in record.get("status_history") or ()}
        # A phase the transaction never reached (it failed or was cancelled before) keeps
        # an empty bar rather than a "0/0".
        begun = {
            "ingest": TxStatus.PROCESSING in seen,
            "sending": TxStatus.READY_TO_SEND in seen,
            "outcomes": TxStatus.READY_TO_SEND in seen,
        }
        rates = phase_rates(record)
        for phase, (completed, total) in phase_counts(record).items():
            task = self.tasks[phase]
            if not begun[phase]:
                continue
            # Started late (a watch of a running campaign): the rate counts from now on.
            if self.progress.tasks[task].start_time is None:
                self.progress.start_task(task)
            self.progress.update(task, completed=completed, total=total, rate=rates.get(phase))
        if status in FINAL_TX_STATUSES:
            self.progress.refresh()
