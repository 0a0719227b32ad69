"""The transition tables themselves: the shape ARCHITECTURE §1 draws."""

from __future__ import annotations

import itertools

import pytest

from shared.errors import TransitionNotAllowed
from shared.status import FINAL_MESSAGE_STATUSES, FINAL_TX_STATUSES, MessageStatus, TxStatus
from shared.transitions import (
    MESSAGE_TRANSITIONS,
    TX_TRANSITIONS,
    check_message_transition,
    check_tx_transition,
)

HAPPY_PATH = [
    TxStatus.ACCEPT,
    TxStatus.PROCESSING,
    TxStatus.SCHEDULED,
    TxStatus.READY_TO_SEND,
    TxStatus.SENT,
    TxStatus.COMPLETED,
]


def test_every_status_has_a_row() -> None:
    assert set(TX_TRANSITIONS) == set(TxStatus)
    assert set(MESSAGE_TRANSITIONS) == set(MessageStatus)


def test_the_seed_flow_is_allowed_step_by_step() -> None:
    for old, new in itertools.pairwise(HAPPY_PATH):
        check_tx_transition(old, new)
    check_tx_transition(TxStatus.PROCESSING, TxStatus.READY_TO_SEND)  # no send_at


@pytest.mark.parametrize("old", sorted(set(TxStatus) - FINAL_TX_STATUSES))
def test_any_unfinished_transaction_can_fail_or_be_cancelled(old: TxStatus) -> None:
    check_tx_transition(old, TxStatus.FAILED)
    check_tx_transition(old, TxStatus.CANCELLED)


@pytest.mark.parametrize("old", sorted(FINAL_TX_STATUSES))
def test_final_transaction_statuses_go_nowhere(old: TxStatus) -> None:
    for new in TxStatus:
        with pytest.raises(TransitionNotAllowed):
            check_tx_transition(old, new)


def test_no_skipping_ahead_or_going_back() -> None:
    for i, old in enumerate(HAPPY_PATH):
        for j, new in enumerate(HAPPY_PATH):
            allowed = j == i + 1 or (old, new) == (TxStatus.PROCESSING, TxStatus.READY_TO_SEND)
            if allowed:
                check_tx_transition(old, new)
            else:
                with pytest.raises(TransitionNotAllowed):
                    check_tx_transition(old, new)


def test_final_messages_change_only_by_a_complaint_or_a_bounce_after_delivery() -> None:
    after_delivery = {MessageStatus.COMPLAINED, MessageStatus.BOUNCED}
    for old in FINAL_MESSAGE_STATUSES:
        for new in MessageStatus:
            if old == MessageStatus.DELIVERED and new in after_delivery:
                check_message_transition(old, new)
            else:
                with pytest.raises(TransitionNotAllowed):
                    check_message_transition(old, new)
