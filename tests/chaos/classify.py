"""Every recipient classified as Jepsen's NATS (total-queue) checker classifies messages:
what was acknowledged into the system against what came out of it, here the valid rows of
an accepted campaign against the sends SES (the simulator's log) received.

    ok          sent to SES exactly once
    lost        acknowledged, never sent
    duplicated  sent more than once
    unexpected  sent, never acknowledged (an invalid row, or a stranger)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import msgspec

__all__ = ["Classification", "classify"]


class Classification(msgspec.Struct, frozen=True, kw_only=True):
    ok: frozenset[str]
    lost: frozenset[str]
    duplicated: frozenset[str]
    unexpected: frozenset[str]

    def counts(self) -> dict[str, int]:
        return {
            "lost": len(self.lost),
            "duplicated": len(self.duplicated),
            "unexpected": len(self.unexpected),
            "ok": len(self.ok),
        }


def classify(acknowledged: Iterable[str], received: Iterable[str]) -> Classification:
    """``acknowledged``: the keys that must come out once each; ``received``: every key that
    came out, as many times as it did."""
    expected = frozenset(acknowledged)
    seen = Counter(received)
    return Classification(
        ok=frozenset(k for k in expected if seen[k] == 1),
        lost=frozenset(k for k in expected if seen[k] == 0),
        # An unexpected key sent twice is unexpected: nobody asked for it even once.
        duplicated=frozenset(k for k in expected if seen[k] > 1),
        unexpected=frozenset(k for k in seen if k not in expected),
    )
