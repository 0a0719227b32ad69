"""Every transaction status change against the real store and NATS: each allowed one
moves the document, appends to its history and announces it; every other one is refused
and leaves the document exactly as it was."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime

import pytest

from shared.documents import S3Location, StatusEntry, Transaction, from_document, to_document
from shared.errors import TransitionNotAllowed
from shared.events import TxStatusChanged, decoder
from shared.service import Runtime
from shared.status import MessageStatus, TxStatus
from shared.topology import Subjects
from shared.transitions import TX_TRANSITIONS, move_message, transition_tx


def _transaction(status: TxStatus) -> Transaction:
    now = datetime.now(UTC)
    return Transaction(
        id=uuid.uuid4().hex,
        tenant="t1",
        status=status,
        template_id="tpl",
        source=S3Location(bucket="b", key="k"),
        status_history=[StatusEntry(status=status, at=now)],
        created_at=now,
        updated_at=now,
    )


async def test_every_pair(runtime: Runtime) -> None:
    store, broker = runtime.store, runtime.broker
    for old, new in itertools.product(TxStatus, TxStatus):
        tx = _transaction(old)
        await store.transactions.insert_one(to_document(tx))
        before = await store.transactions.find_one({"_id": tx.id})
        if new in TX_TRANSITIONS[old]:
            assert await transition_tx(store, broker, tx, new, metadata={"why": "test"}), (old, new)
            after = from_document(await store.transactions.find_one({"_id": tx.id}), Transaction)
            assert after.status == new
            assert [e.status for e in after.status_history] == [old, new]
            assert after.status_history[-1].metadata == {"why": "test"}
            msg = await broker.js.get_last_msg("TX_STATUS", Subjects.tx_status(new))
            event = decoder(TxStatusChanged).decode(msg.data)
            assert (event.transaction_id, event.old_status, event.new_status) == (tx.id, old, new)
        else:
            with pytest.raises(TransitionNotAllowed):
                await transition_tx(store, broker, tx, new)
            assert await store.transactions.find_one({"_id": tx.id}) == before, (old, new)


async def test_a_stale_precondition_changes_nothing(runtime: Runtime) -> None:
    store, broker = runtime.store, runtime.broker
    tx = _transaction(TxStatus.ACCEPT)
    await store.transactions.insert_one(to_document(tx))
    assert await transition_tx(store, broker, tx, TxStatus.PROCESSING)
    # A second replica read the same ACCEPT document: its change must not apply twice.
    assert not await transition_tx(store, broker, tx, TxStatus.PROCESSING)
    after = from_document(await store.transactions.find_one({"_id": tx.id}), Transaction)
    assert [e.status for e in after.status_history] == [TxStatus.ACCEPT, TxStatus.PROCESSING]


async def test_move_message_reports_where_it_came_from(runtime: Runtime) -> None:
    store = runtime.store
    await store.messages.insert_one({"_id": "t:2", "status": MessageStatus.SENDING})
    moved = await move_message(
        store, "t:2", [MessageStatus.SENT, MessageStatus.SENDING], MessageStatus.DELIVERED
    )
    assert moved == MessageStatus.SENDING
    again = await move_message(
        store, "t:2", [MessageStatus.SENT, MessageStatus.SENDING], MessageStatus.DELIVERED
    )
    assert again is None
    with pytest.raises(TransitionNotAllowed):
        await move_message(store, "t:2", [MessageStatus.DELIVERED], MessageStatus.SENT)


async def test_an_announcement_cut_off_by_a_crash_goes_out_on_the_retry(runtime: Runtime) -> None:
    store, broker = runtime.store, runtime.broker
    tx = _transaction(TxStatus.ACCEPT)
    await store.transactions.insert_one(to_document(tx))
    # The change was stored, then the process died before announcing it.
    changed_at = datetime.now(UTC)
    entry = StatusEntry(status=TxStatus.PROCESSING, at=changed_at)
    await store.transactions.update_one(
        {"_id": tx.id},
        {"$set": {"status": TxStatus.PROCESSING}, "$push": {"status_history": to_document(entry)}},
    )
    await broker.js.purge_stream("TX_STATUS", subject=Subjects.tx_status(TxStatus.PROCESSING))

    # The redelivered work reads the old document and tries the same change again.
    assert not await transition_tx(store, broker, tx, TxStatus.PROCESSING)

    msg = await broker.js.get_last_msg("TX_STATUS", Subjects.tx_status(TxStatus.PROCESSING))
    event = decoder(TxStatusChanged).decode(msg.data)
    assert (event.transaction_id, event.old_status) == (tx.id, TxStatus.ACCEPT)
    assert abs((event.timestamp - changed_at).total_seconds()) < 0.01
    after = from_document(await store.transactions.find_one({"_id": tx.id}), Transaction)
    assert len(after.status_history) == 2  # announced again, not changed again
