"""The reduced chaos run ``make test`` collects: one campaign of 1,000 rows of known
outcomes while faults of every kind, mixed at random, hit it (kill -9 of services, NATS and
the store restarted, SES throttling and 5xx, the callback receiver down, a slow store);
then no message lost or sent twice, every status, counter and callback right, nothing stuck
and no dead letter. ``make chaos`` runs 20 such trials of 10,000 rows."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.chaos.faults import FAULTS
from tests.chaos.harness import ChaosRig, chaos_rig, format_table, run_trial

MESSAGES = 1_000
# At the chaos rate (200/s) a fast machine sent 1,000 rows in 15 s, while two long faults
# ran: too few landed to prove anything. At 40/s the sending alone takes 25 s and, with a
# fault every 0.5-2 s, several land before COMPLETED.
RATE = 40
GAP = (0.5, 2.0)

pytestmark = pytest.mark.timeout(420)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosRig]:
    with chaos_rig(tmp_path_factory.mktemp("chaos"), rate=RATE) as running:
        yield running


def test_a_campaign_under_mixed_faults_keeps_every_invariant(rig: ChaosRig) -> None:
    result = run_trial(rig, 0, messages=MESSAGES, faults=list(FAULTS), timeout=300, gap=GAP)
    report = "\n".join([*result.faults, *result.violations, format_table([result])])
    # Faults landed while the campaign ran: otherwise this proves nothing.
    assert len(result.faults) >= 3, report
    assert result.violations == [], report
    assert result.counts["lost"] == result.counts["duplicated"] == 0, report
    assert result.counts["ok"] > 0.9 * MESSAGES, report
