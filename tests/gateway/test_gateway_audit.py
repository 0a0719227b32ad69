"""A transaction's audit trail (``GET /api/v1/transactions/{id}/audit``): status history,
callbacks with their tries, dead letters and operator actions with who and when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from services.gateway.deps import GatewayDeps
from services.tracker.callbacks import deliveries_of
from shared.documents import DeadLetter, S3Location, StatusEntry, Transaction, to_document
from shared.records import keep_dead_letter
from shared.status import TxStatus
from shared.topology import Subjects
from tests.conftest import issue_key
from tests.gateway.conftest import TENANT, ClientFactory
from tests.tracker.tracker_builders import sent_transaction

OTHER_TENANT = "globex"


async def test_the_audit_trail_shows_history_callbacks_letters_and_who_did_what(
    make_client: ClientFactory, deps: GatewayDeps, api_key: str
) -> None:
    tx, _ = sent_transaction(0, callback_url="https://hooks.example.com/a")
    tx = msgspec.structs.replace(tx, tenant=TENANT)
    await deps.store.transactions.insert_one(to_document(tx))
    now = datetime.now(UTC).replace(microsecond=0)
    await deps.store.callbacks.insert_many([to_document(d) for d in deliveries_of(tx, now)])
    letter = DeadLetter(
        id=f"message:{tx.id}:2",
        kind="message",
        service="sender",
        subject=Subjects.SEND_BATCH,
        stream_seq=0,
        deliveries=5,
        payload="{}",
        error="MessageRejected",
        at=now,
        transaction_id=tx.id,
        message_id=f"{tx.id}:2",
    )
    await keep_dead_letter(deps.store, letter)
    # A transaction that can still be cancelled.
    waiting = Transaction(
        id="tx-waiting",
        tenant=TENANT,
        status=TxStatus.ACCEPT,
        template_id="tpl-1",
        source=S3Location(bucket="b", key="k.csv"),
        status_history=[StatusEntry(status=TxStatus.ACCEPT, at=now - timedelta(seconds=30))],
        created_at=now,
        updated_at=now,
    )
    await deps.store.transactions.insert_one(to_document(waiting))
    admin = await issue_key(deps.store, OTHER_TENANT, admin=True)

    async with make_client() as client:
        replay = await client.post(f"/api/v1/transactions/{tx.id}/callbacks/{tx.id}:2/replay")
        assert replay.status_code == 202, replay.text
        cancel = await client.post(f"/api/v1/transactions/{waiting.id}/cancel")
        assert cancel.status_code == 202, cancel.text
        # The platform's operator (an admin of the operator tenant) discards it.
        async with make_client(api_key=admin, operator_tenant=OTHER_TENANT) as as_admin:
            discard = await as_admin.post(f"/api/v1/admin/dead-letters/{letter.id}/discard")
            assert discard.status_code == 200, discard.text

        answer = await client.get(f"/api/v1/transactions/{tx.id}/audit")
        assert answer.status_code == 200, answer.text
        audit = answer.json()
        assert audit["status"] == "SENT"
        history = audit["status_history"]
        assert [h["status"] for h in history] == [e.status for e in tx.status_history]
        # One minute in each status before the current one; the current one up to now.
        assert {h["seconds"] for h in history[:-1]} == {60.0}
        assert history[-1]["seconds"] >= 0
        assert [c["callback_id"] for c in audit["callbacks"]] == [f"{tx.id}:{n}" for n in (1, 2, 3)]
        [dead] = audit["dead_letters"]
        assert (dead["id"], dead["kind"], dead["state"]) == (letter.id, "message", "discarded")
        actions = audit["operator_actions"]
        assert [a["action"] for a in actions] == ["callback_replay", "dead_letter_discard"]
        replayed, discarded = actions
        assert replayed["who"]["tenant"] == TENANT
        assert api_key.startswith(replayed["who"]["key_prefix"])
        assert replayed["details"]["callback_id"] == f"{tx.id}:2"
        assert discarded["who"]["tenant"] == OTHER_TENANT
        assert admin.startswith(discarded["who"]["key_prefix"])
        assert discarded["dead_letter_id"] == letter.id
        assert "key" not in replayed["who"]

        cancelled = (await client.get(f"/api/v1/transactions/{waiting.id}/audit")).json()
        [action] = cancelled["operator_actions"]
        assert action["action"] == "cancel"
        assert action["details"] == {"status": "ACCEPT"}
        assert cancelled["callbacks"] == []
        assert cancelled["dead_letters"] == []

    async with make_client(api_key=await issue_key(deps.store, OTHER_TENANT)) as other:
        hidden = await other.get(f"/api/v1/transactions/{tx.id}/audit")
        assert hidden.status_code == 404
        assert hidden.json()["error"]["code"] == "TRANSACTION_NOT_FOUND"
