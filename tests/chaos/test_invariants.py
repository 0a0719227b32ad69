"""The invariant checker on hand-made snapshots: silent on a clean one, and each broken
invariant named (a checker that cannot fail would make every chaos trial pass)."""

from __future__ import annotations

from pathlib import Path

import pytest
from msgspec.structs import replace

from tests.chaos.campaign import Campaign
from tests.chaos.invariants import Observation, violations

TX = "tx1"
CAMPAIGN = Campaign(
    csv=Path("unused.csv"),
    expected={"a@x": "DELIVERED", "b@x": "BOUNCED", "c@x": "COMPLAINED"},
    invalid=1,
)
CLEAN = Observation(
    tx_status="COMPLETED",
    counters={"total": 3, "invalid": 1, "delivered": 1, "bounced": 1, "complained": 1, "sent": 0},
    history_length=5,  # ACCEPT + 4 changes: callbacks 1..4
    statuses=dict(CAMPAIGN.expected),
    messages=3,
    sent_to=["a@x", "b@x", "c@x"],
    callbacks={f"{TX}:{seq}": 1 for seq in range(1, 5)},
    pending_callbacks=[],
    new_dead_letters=[],
)


def test_a_clean_snapshot_breaks_nothing() -> None:
    assert violations(CAMPAIGN, TX, CLEAN) == []
    # A callback delivered twice is allowed: the receiver dedupes by webhook-id.
    assert violations(CAMPAIGN, TX, replace(CLEAN, callbacks={**CLEAN.callbacks, "tx1:2": 2})) == []


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"sent_to": ["a@x", "b@x"]}, "1 lost"),
        ({"sent_to": ["a@x", "b@x", "c@x", "c@x"]}, "1 duplicated"),
        ({"sent_to": ["a@x", "b@x", "c@x", "z@x"]}, "1 unexpected"),
        ({"tx_status": "SENT"}, "not COMPLETED"),
        ({"statuses": {**CAMPAIGN.expected, "c@x": "DELIVERED"}}, "wrong status"),
        ({"statuses": {**CAMPAIGN.expected, "c@x": "SENT"}}, "not final"),
        ({"messages": 4}, "message documents"),
        ({"counters": {**CLEAN.counters, "delivered": 2}}, "recount"),
        ({"counters": {**CLEAN.counters, "invalid": 0}}, "total, invalid"),
        ({"callbacks": {f"{TX}:{seq}": 1 for seq in range(1, 4)}}, "never arrived"),
        ({"callbacks": {**CLEAN.callbacks, f"{TX}:9": 1}}, "of no change"),
        ({"pending_callbacks": [f"{TX}:4"]}, "pending"),
        ({"new_dead_letters": ["job sender 1"]}, "dead letters"),
    ],
)
def test_each_broken_invariant_is_named(change: dict[str, object], named: str) -> None:
    found = violations(CAMPAIGN, TX, replace(CLEAN, **change))
    assert len(found) >= 1
    assert any(named in line for line in found), found
