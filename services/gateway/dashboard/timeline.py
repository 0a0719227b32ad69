"""A transaction's timeline: each status it went through, when, and for how long.

From ``status_history``: an entry lasts until the next one; the last one until now while
the transaction is not final (it is still in it) and has no length once it is final.
``share`` is the entry's part of the whole, for the drawn bar.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import msgspec

from shared.documents import StatusEntry

__all__ = ["Step", "timeline"]


class Step(msgspec.Struct, frozen=True, kw_only=True):
    status: str
    at: datetime
    # None for a final status: nothing follows it.
    seconds: float | None
    # ``seconds`` over the sum of every step's, 0..1.
    share: float


def timeline(history: Sequence[StatusEntry], now: datetime, *, final: bool) -> list[Step]:
    ends: list[datetime | None] = [entry.at for entry in history[1:]]
    ends.append(None if final else now)
    spans = [
        None if end is None else max((end - entry.at).total_seconds(), 0.0)
        for entry, end in zip(history, ends, strict=True)
    ]
    whole = sum(span for span in spans if span is not None)
    return [
        Step(
            status=entry.status.value,
            at=entry.at,
            seconds=span,
            share=(span / whole) if span is not None and whole > 0 else 0.0,
        )
        for entry, span in zip(history, spans, strict=True)
    ]
