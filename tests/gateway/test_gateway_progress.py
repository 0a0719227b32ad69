"""The status view's arithmetic: a pure function of the stored record and the clock."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from shared.documents import S3Location, StatusEntry, Transaction
from shared.progress import compute_progress
from shared.status import TxStatus

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def _tx(
    status: TxStatus,
    counters: dict[str, int],
    history: Sequence[tuple[TxStatus, datetime]] = (),
    ingest_progress: dict[str, int] | None = None,
) -> Transaction:
    return Transaction(
        id="tx1",
        tenant="default",
        status=status,
        template_id="t1",
        source=S3Location(bucket="b", key="k"),
        counters=counters,
        ingest_progress=ingest_progress or {},
        status_history=[StatusEntry(status=s, at=at) for s, at in history],
        created_at=T0,
        updated_at=T0,
    )


def test_nothing_processed_has_no_estimate() -> None:
    tx = _tx(TxStatus.READY_TO_SEND, {"total": 10, "sending": 3}, [(TxStatus.READY_TO_SEND, T0)])
    view = compute_progress(tx, T0 + timedelta(seconds=30))
    assert view.progress.total_messages == 10
    assert view.progress.processed_messages == 0
    assert view.progress.percentage == 0.0
    assert view.estimated_completion is None


def test_linear_estimate_from_ready_to_send() -> None:
    counters = {"total": 300, "delivered": 50, "bounced": 30, "failed": 10, "sent": 100}
    history = [(TxStatus.ACCEPT, T0 - timedelta(minutes=5)), (TxStatus.READY_TO_SEND, T0)]
    tx = _tx(TxStatus.SENT, counters, history)
    now = T0 + timedelta(seconds=90)
    view = compute_progress(tx, now)
    assert view.progress.processed_messages == 90  # sent is not final
    assert view.progress.percentage == 30.0
    # 90 messages in 90 s: the other 210 take 210 s more.
    assert view.estimated_completion == now + timedelta(seconds=210)


def test_percentage_rounds_to_one_decimal() -> None:
    tx = _tx(TxStatus.SENT, {"total": 3, "delivered": 1}, [(TxStatus.READY_TO_SEND, T0)])
    assert compute_progress(tx, T0 + timedelta(seconds=1)).progress.percentage == 33.3


def test_every_final_message_status_counts() -> None:
    finals = ["delivered", "bounced", "complained", "failed", "suppressed", "expired", "cancelled"]
    counters = {"total": 14, **dict.fromkeys(finals, 2)}
    tx = _tx(TxStatus.SENT, counters, [(TxStatus.READY_TO_SEND, T0)])
    view = compute_progress(tx, T0 + timedelta(seconds=5))
    assert view.progress.processed_messages == 14
    assert view.estimated_completion == T0 + timedelta(seconds=5)


def test_final_transactions_have_no_estimate() -> None:
    completed = _tx(TxStatus.COMPLETED, {"total": 4, "delivered": 3, "bounced": 1})
    view = compute_progress(completed, T0)
    assert view.progress.percentage == 100.0
    assert view.estimated_completion is None
    failed = _tx(TxStatus.FAILED, {"total": 4, "delivered": 1}, [(TxStatus.READY_TO_SEND, T0)])
    assert compute_progress(failed, T0 + timedelta(seconds=9)).estimated_completion is None


def test_empty_transaction_is_zero_percent() -> None:
    view = compute_progress(_tx(TxStatus.PROCESSING, {}), T0)
    assert view.progress.total_messages == 0
    assert view.progress.percentage == 0.0
    assert view.estimated_completion is None


def test_no_ready_to_send_entry_has_no_estimate() -> None:
    tx = _tx(TxStatus.PROCESSING, {"total": 5, "delivered": 1}, [(TxStatus.ACCEPT, T0)])
    assert compute_progress(tx, T0 + timedelta(seconds=5)).estimated_completion is None


def test_while_ingest_reads_the_file_its_progress_grows_batch_by_batch() -> None:
    seen = []
    for valid, invalid in [(0, 0), (500, 3), (1000, 7)]:
        tx = _tx(TxStatus.PROCESSING, {}, ingest_progress={"valid": valid, "invalid": invalid})
        view = compute_progress(tx, T0)
        seen.append((view.progress.total_messages, view.progress.processed_messages))
        assert view.progress.percentage == 0.0
        assert view.estimated_completion is None
    assert seen == [(0, 0), (503, 500), (1007, 1000)]


def test_once_ingest_set_the_counters_the_sending_numbers_take_over() -> None:
    counters = {"total": 1000, "invalid": 7, "ready_to_send": 1000}
    tx = _tx(TxStatus.PROCESSING, counters, ingest_progress={"valid": 1000, "invalid": 7})
    view = compute_progress(tx, T0)
    assert (view.progress.total_messages, view.progress.processed_messages) == (1000, 0)
    later = _tx(
        TxStatus.SENT,
        {**counters, "delivered": 250},
        [(TxStatus.READY_TO_SEND, T0)],
        ingest_progress={"valid": 1000, "invalid": 7},
    )
    view = compute_progress(later, T0 + timedelta(seconds=10))
    assert (view.progress.total_messages, view.progress.processed_messages) == (1000, 250)
    assert view.progress.percentage == 25.0


def test_a_file_failed_by_ingest_shows_no_progress() -> None:
    tx = _tx(TxStatus.FAILED, {}, ingest_progress={"valid": 40, "invalid": 1})
    view = compute_progress(tx, T0)
    assert (view.progress.total_messages, view.progress.processed_messages) == (0, 0)
