"""Counts by outcome as bars: what the transaction page draws as an inline SVG chart.

One bar per message status plus the invalid rows, in the order of the status flow, every
one present (a chart whose bars come and go is hard to read while it moves). A bar's
``share`` is its count over the largest count; ``tone`` is how the page colours it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import msgspec

from shared.status import MessageStatus

__all__ = ["Bar", "outcome_bars"]

# By counter key; any other status is still on its way ("busy").
_TONES: Final[Mapping[str, str]] = {
    "invalid": "bad",
    "delivered": "good",
    "bounced": "bad",
    "complained": "bad",
    "failed": "bad",
    "expired": "bad",
    "suppressed": "muted",
    "cancelled": "muted",
}


class Bar(msgspec.Struct, frozen=True, kw_only=True):
    label: str
    count: int
    share: float
    # good, bad, muted, or busy (not final yet).
    tone: str


def outcome_bars(counters: Mapping[str, int]) -> list[Bar]:
    keys = ["invalid", *(status.lower() for status in MessageStatus)]
    counts = [(key, max(counters.get(key, 0), 0)) for key in keys]
    largest = max((count for _, count in counts), default=0)
    return [
        Bar(
            label=key,
            count=count,
            share=count / largest if largest else 0.0,
            tone=_TONES.get(key, "busy"),
        )
        for key, count in counts
    ]
