"""The outcome table: every rule, and every rule allowed by the message transition table."""

from __future__ import annotations

import itertools

import pytest

from services.tracker.events_actor import fold
from services.tracker.outcome import OUTCOME_RULES, RECORD_ONLY, outcome_for
from services.tracker.ses_event import SesEvent, parse_ses_event
from shared.status import MessageStatus as M
from shared.transitions import check_message_transition
from tests.tracker.tracker_builders import payload


@pytest.mark.parametrize(
    ("kind", "bounce_type", "status", "candidates"),
    [
        ("Delivery", None, M.DELIVERED, {M.SENT, M.SENDING}),
        ("Bounce", "Permanent", M.BOUNCED, {M.SENT, M.SENDING, M.DELIVERED}),
        ("Bounce", "Transient", None, set()),
        ("Bounce", "Undetermined", None, set()),
        ("Bounce", "SomethingNew", None, set()),
        ("Complaint", None, M.COMPLAINED, {M.SENT, M.SENDING, M.DELIVERED}),
        ("Reject", None, M.FAILED, {M.SENT, M.SENDING}),
        ("Rendering Failure", None, M.FAILED, {M.SENT, M.SENDING}),
        ("DeliveryDelay", None, None, set()),
        ("Send", None, None, set()),
        ("Open", None, None, set()),
        ("Click", None, None, set()),
        ("Subscription", None, None, set()),
        ("Teleport", None, None, set()),
    ],
)
def test_rules(kind: str, bounce_type: str | None, status: M | None, candidates: set[M]) -> None:
    outcome = outcome_for(SesEvent(kind=kind, bounce_type=bounce_type))
    assert outcome.status == status
    assert set(outcome.candidates) == candidates
    assert outcome.record_only == (status is None)


def test_bounce_type_matters_only_for_bounces() -> None:
    assert outcome_for(SesEvent(kind="Delivery", bounce_type="Transient")).status == M.DELIVERED


def test_every_rule_is_an_allowed_transition() -> None:
    for outcome in OUTCOME_RULES.values():
        if outcome.status is None:
            assert outcome is RECORD_ONLY
            continue
        assert outcome.candidates
        for old in outcome.candidates:
            check_message_transition(old, outcome.status)


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("event_delivery", M.DELIVERED),
        ("event_bounce", M.BOUNCED),
        ("event_complaint", M.COMPLAINED),
        ("notification_delivery", M.DELIVERED),
        ("notification_bounce", M.BOUNCED),
        ("notification_complaint", M.COMPLAINED),
    ],
)
def test_the_example_payloads(name: str, status: M) -> None:
    assert outcome_for(parse_ses_event(payload(name))).status == status


def test_only_permanent_bounces_and_complaints_suppress() -> None:
    suppressing = {key: rule.suppress for key, rule in OUTCOME_RULES.items() if rule.suppress}
    assert suppressing == {("Bounce", "Permanent"): "bounced", ("Complaint", None): "complained"}


# The events one mail can get: delivered (then maybe a complaint), or bounced (maybe after
# a delivery); with delays, transient bounces, opens and clicks on the way.
_DELIVERED = ("Send", "DeliveryDelay", "Transient", "Delivery", "Open", "Click", "Complaint")
_BOUNCED = ("Send", "DeliveryDelay", "Transient", "Delivery", "Permanent")


@pytest.mark.parametrize("kinds", [_DELIVERED, _BOUNCED])
def test_any_order_of_a_mails_events_ends_in_the_same_status(kinds: tuple[str, ...]) -> None:
    def event(kind: str) -> SesEvent:
        if kind in ("Transient", "Permanent"):
            return SesEvent(kind="Bounce", bounce_type=kind)
        return SesEvent(kind=kind)

    events = [event(kind) for kind in kinds]
    ends = {fold(M.SENT, order) for order in itertools.permutations(events)}
    ends |= {fold(M.SENDING, order) for order in itertools.permutations(events)}
    ends |= {fold(M.SENT, order + order[::-1]) for order in itertools.permutations(events)}
    assert len(ends) == 1
