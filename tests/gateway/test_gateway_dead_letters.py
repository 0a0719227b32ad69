"""Dead letters under manual review (``/api/v1/admin/dead-letters``) and transactions under
review (``/api/v1/admin/transactions``): admin keys only, each its own tenant's; the operator
tenant's admin keys (``operator_tenant``) everyone's.

Job letters are made by the real actor runner (an actor that gives up at once on the real
consumers of ingest, the sender and the tracker), a callback letter by the tracker's pump
against a real receiver; a retried job is read back from its stream, a retried callback is
sent again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from nats.js.api import RawStreamMsg

from services.gateway.deps import GatewayDeps
from services.tracker.callback_pump import CallbackPumpActor
from services.tracker.callback_retry import RetryPolicy
from services.tracker.callbacks import deliveries_of
from shared.actor import Actor, ActorRunner
from shared.callback_outbox import announce_due
from shared.documents import DeadLetter, Transaction, to_document
from shared.errors import PermanentError
from shared.events import SendBatch, TxAccepted, encode
from shared.records import keep_dead_letter
from shared.safe_http import parse_networks, safe_http_client
from shared.status import CallbackState, TxStatus
from shared.topology import CONSUMERS, ConsumerSpec, Subjects
from tests.conftest import issue_key
from tests.gateway.conftest import TENANT, ClientFactory
from tests.tracker.callback_receiver import TEST_NETWORKS, Receiver, run_until
from tests.tracker.tracker_builders import sent_transaction

OTHER_TENANT = "globex"
_STREAMS = ("TX_ACCEPTED", "SEND_BATCH", "SES_EVENTS", "CALLBACKS")
_LETTERS = "/api/v1/admin/dead-letters"


class _GivingUp(Actor[Any]):
    """Gives up on every event at once, as a handler meeting a ``PermanentError`` does."""

    def __init__(self, spec: ConsumerSpec, event_type: type[msgspec.Struct]) -> None:
        self.spec = spec
        self.event_type = event_type

    async def handle(self, event: Any) -> None:
        raise PermanentError("cannot be done")


@pytest.fixture
async def streams(deps: GatewayDeps) -> GatewayDeps:
    """``deps`` with the work streams these tests use emptied (shared by the session)."""
    for stream in _STREAMS:
        await deps.broker.js.purge_stream(stream)
    return deps


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    await found.start()
    yield found
    await found.stop()


async def _dead_letter_jobs(deps: GatewayDeps) -> None:
    """A send batch, an ingest job and an undecodable SES event, each given up on."""
    await deps.broker.publish(
        Subjects.SEND_BATCH, SendBatch(transaction_id="tx-b", batch=3), msg_id="tx-b:3"
    )
    await deps.broker.publish(
        Subjects.TX_ACCEPTED, TxAccepted(transaction_id="tx-a"), msg_id="tx-a:accepted"
    )
    await deps.broker.nc.publish(Subjects.SES_EVENTS, b"not json")
    await deps.broker.nc.flush()
    for spec, kind in (
        (CONSUMERS.SENDER, SendBatch),
        (CONSUMERS.INGEST, TxAccepted),
        (CONSUMERS.TRACKER_EVENTS, TxAccepted),
    ):
        runner = ActorRunner(_GivingUp(spec, kind), deps.broker, deps.store, fetch_timeout=0.2)
        await runner.run(until_idle=True)


async def test_job_letters_are_listed_shown_retried_onto_their_stream_and_discarded(
    make_client: ClientFactory, streams: GatewayDeps
) -> None:
    deps = streams
    await _dead_letter_jobs(deps)
    admin = await issue_key(deps.store, TENANT, admin=True)
    # Their transactions are unknown: the letters name no tenant, the operator reviews them.
    async with make_client(api_key=admin, operator_tenant=TENANT) as client:
        listed = await client.get(_LETTERS)
        assert listed.status_code == 200, listed.text
        items = listed.json()["items"]
        # Newest first: the event, the ingest job, the send batch.
        assert [i["kind"] for i in items] == ["event", "ingest_job", "send_batch"]
        assert {i["state"] for i in items} == {"open"}
        assert listed.json()["next_cursor"] is None
        for kind, count in (
            ("ingest_job", 1),
            ("send_batch", 1),
            ("event", 1),
            ("job", 3),
            ("callback", 0),
            ("message", 0),
        ):
            page = (await client.get(_LETTERS, params={"kind": kind})).json()
            assert len(page["items"]) == count, kind
        assert (await client.get(_LETTERS, params={"kind": "nope"})).status_code == 400

        first = (await client.get(_LETTERS, params={"limit": 2})).json()
        assert len(first["items"]) == 2
        assert first["next_cursor"]
        rest = (await client.get(_LETTERS, params={"cursor": first["next_cursor"]})).json()
        assert [i["id"] for i in first["items"] + rest["items"]] == [i["id"] for i in items]

        ingest = next(i for i in items if i["kind"] == "ingest_job")
        shown = (await client.get(f"{_LETTERS}/{ingest['id']}")).json()
        assert shown["transaction_id"] == "tx-a"
        assert shown["subject"] == Subjects.TX_ACCEPTED
        assert msgspec.json.decode(shown["payload"]) == {"transaction_id": "tx-a"}
        assert "cannot be done" in shown["error"]
        assert shown["attempts"] == 1
        assert shown["stream_seq"] > 0
        assert shown["history"] == []

        retried = await client.post(f"{_LETTERS}/{ingest['id']}/retry")
        assert retried.status_code == 200, retried.text
        body = retried.json()
        assert body["state"] == "retried"
        [entry] = body["history"]
        assert entry["action"] == "retried"
        assert entry["who"]["tenant"] == TENANT
        assert admin.startswith(entry["who"]["key_prefix"])
        assert entry["details"]["msg_id"] == f"{ingest['id']}:retry:1"
        # Back on its stream, byte for byte, under the retry's message id.
        back: RawStreamMsg = await deps.broker.js.get_last_msg("TX_ACCEPTED", Subjects.TX_ACCEPTED)
        assert back.data == encode(TxAccepted(transaction_id="tx-a"))
        assert back.headers is not None
        assert back.headers["Nats-Msg-Id"] == f"{ingest['id']}:retry:1"

        again = await client.post(f"{_LETTERS}/{ingest['id']}/retry")
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "DEAD_LETTER_CLOSED"
        assert again.json()["error"]["details"]["state"] == "retried"

        # The undecodable event goes back as it was, too.
        event = next(i for i in items if i["kind"] == "event")
        assert (await client.post(f"{_LETTERS}/{event['id']}/retry")).status_code == 200
        raw = await deps.broker.js.get_last_msg("SES_EVENTS", Subjects.SES_EVENTS)
        assert raw.data == b"not json"

        batch = next(i for i in items if i["kind"] == "send_batch")
        discarded = await client.post(f"{_LETTERS}/{batch['id']}/discard")
        assert discarded.status_code == 200, discarded.text
        assert discarded.json()["state"] == "discarded"
        assert discarded.json()["history"][0]["action"] == "discarded"
        for verb in ("retry", "discard"):
            closed = await client.post(f"{_LETTERS}/{batch['id']}/{verb}")
            assert closed.status_code == 409
            assert closed.json()["error"]["code"] == "DEAD_LETTER_CLOSED"
        # Kept: never deleted.
        assert len((await client.get(_LETTERS)).json()["items"]) == 3

        missing = await client.get(f"{_LETTERS}/nope")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "DEAD_LETTER_NOT_FOUND"
        assert (await client.post(f"{_LETTERS}/nope/retry")).status_code == 404

    # Recorded as operator actions of the letters' transactions.
    actions = await deps.store.operator_actions.find({}).sort("at").to_list(None)
    assert [(a["action"], a["transaction_id"]) for a in actions] == [
        ("dead_letter_retry", "tx-a"),
        ("dead_letter_retry", None),
        ("dead_letter_discard", "tx-b"),
    ]

    async with make_client() as not_admin:
        for answer in (
            await not_admin.get(_LETTERS),
            await not_admin.get(f"{_LETTERS}/{batch['id']}"),
            await not_admin.post(f"{_LETTERS}/{event['id']}/discard"),
        ):
            assert answer.status_code == 403
            assert answer.json()["error"]["code"] == "FORBIDDEN"


async def test_a_message_letter_is_not_retried_on_its_own_but_can_be_discarded(
    make_client: ClientFactory, deps: GatewayDeps
) -> None:
    letter = DeadLetter(
        id="message:tx-m:2",
        kind="message",
        service="sender",
        subject=Subjects.SEND_BATCH,
        stream_seq=0,
        deliveries=5,
        payload='{"message_id":"tx-m:2","email":"a@example.com"}',
        error="MessageRejected: no",
        at=datetime.now(UTC),
        transaction_id="tx-m",
        message_id="tx-m:2",
    )
    await keep_dead_letter(deps.store, letter)
    admin = await issue_key(deps.store, TENANT, admin=True)
    async with make_client(api_key=admin, operator_tenant=TENANT) as client:
        [item] = (await client.get(_LETTERS, params={"kind": "message"})).json()["items"]
        assert (item["id"], item["message_id"], item["attempts"]) == (letter.id, "tx-m:2", 5)
        refused = await client.post(f"{_LETTERS}/{letter.id}/retry")
        assert refused.status_code == 409
        error = refused.json()["error"]
        assert error["code"] == "DEAD_LETTER_NOT_RETRYABLE"
        assert error["details"]["retry_with"] == "/api/v1/transactions/tx-m/retry-failed"
        # Still open: discarding it is allowed.
        assert (await client.get(f"{_LETTERS}/{letter.id}")).json()["state"] == "open"
        discarded = await client.post(f"{_LETTERS}/{letter.id}/discard")
        assert discarded.json()["state"] == "discarded"


async def test_a_dead_callback_letter_is_retried_by_replaying_the_callback(
    make_client: ClientFactory, streams: GatewayDeps, receiver: Receiver
) -> None:
    deps = streams
    tx, _ = sent_transaction(0, callback_url=receiver.url())
    tx = msgspec.structs.replace(tx, tenant=TENANT)
    await deps.store.transactions.insert_one(to_document(tx))
    now = datetime.now(UTC).replace(microsecond=0)
    await deps.store.callbacks.insert_many([to_document(d) for d in deliveries_of(tx, now)])
    # The first callback's only try fails: with no retries left, it is dead.
    receiver.plans["main"] = [500]
    policy = RetryPolicy(delays=(), retry_after_max=10.0)
    async with safe_http_client(allowed=parse_networks(TEST_NETWORKS), timeout=5.0) as http:
        pump = CallbackPumpActor(deps.store, deps.broker, http, policy, timeout=5.0)

        async def tried_all() -> bool:
            return len(receiver.received) == 3

        await announce_due(deps.broker, tx.id)
        runner = ActorRunner(pump, deps.broker, deps.store, fetch_timeout=0.2)
        await run_until([runner], tried_all, 20)

        admin = await issue_key(deps.store, TENANT, admin=True)
        async with make_client(api_key=admin) as client:
            [item] = (await client.get(_LETTERS, params={"kind": "callback"})).json()["items"]
            assert item["message_id"] == f"{tx.id}:1"
            assert item["transaction_id"] == tx.id
            retried = await client.post(f"{_LETTERS}/{item['id']}/retry")
            assert retried.status_code == 200, retried.text
            assert retried.json()["history"][0]["details"] == {"callback_id": f"{tx.id}:1"}

        async def replayed() -> bool:
            return len(receiver.delivered()) == 3

        runner = ActorRunner(pump, deps.broker, deps.store, fetch_timeout=0.2)
        await run_until([runner], replayed, 20)
    assert receiver.received[-1].webhook_id == f"{tx.id}:1"
    raw = await deps.store.callbacks.find_one({"_id": f"{tx.id}:1"})
    assert raw is not None
    assert raw["state"] == CallbackState.DELIVERED
    assert raw["attempts"][-1]["replay"] is True


async def test_the_operator_lists_every_tenants_transactions_in_a_status(
    make_client: ClientFactory, deps: GatewayDeps
) -> None:
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    made: list[Transaction] = []
    for n, (tenant, status) in enumerate(
        [
            (TENANT, TxStatus.FAILED),
            (OTHER_TENANT, TxStatus.FAILED),
            (OTHER_TENANT, TxStatus.COMPLETED),
            (TENANT, TxStatus.FAILED),
        ]
    ):
        tx, _ = sent_transaction(0, status=TxStatus.SENT)
        tx = msgspec.structs.replace(
            tx,
            tenant=tenant,
            status=status,
            failure={"code": "FILE_UNREADABLE"} if status is TxStatus.FAILED else None,
            created_at=base + timedelta(minutes=n),
        )
        made.append(tx)
        await deps.store.transactions.insert_one(to_document(tx))
    admin = await issue_key(deps.store, TENANT, admin=True)
    url = "/api/v1/admin/transactions"
    async with make_client(api_key=admin, operator_tenant=TENANT) as client:
        failed = (await client.get(url, params={"status": "FAILED", "limit": 2})).json()
        assert [i["transaction_id"] for i in failed["items"]] == [made[3].id, made[1].id]
        assert failed["items"][1]["tenant"] == OTHER_TENANT
        assert failed["items"][1]["failure"] == {"code": "FILE_UNREADABLE"}
        rest = (
            await client.get(url, params={"status": "FAILED", "cursor": failed["next_cursor"]})
        ).json()
        assert [i["transaction_id"] for i in rest["items"]] == [made[0].id]
        assert rest["next_cursor"] is None
        everything = (await client.get(url)).json()["items"]
        assert [i["transaction_id"] for i in everything] == [tx.id for tx in reversed(made)]
    # Another tenant's admin reviews its own tenant's only.
    other_admin = await issue_key(deps.store, OTHER_TENANT, admin=True)
    async with make_client(api_key=other_admin, operator_tenant=TENANT) as other:
        own = (await other.get(url, params={"status": "FAILED"})).json()["items"]
        assert [i["transaction_id"] for i in own] == [made[1].id]
    async with make_client() as not_admin:
        refused = await not_admin.get(url, params={"status": "FAILED"})
        assert refused.status_code == 403


async def test_an_admin_reviews_its_own_tenants_letters_only(
    make_client: ClientFactory, deps: GatewayDeps
) -> None:
    letters: dict[str | None, DeadLetter] = {}
    for tenant in (TENANT, OTHER_TENANT, None):
        transaction_id = None
        if tenant is not None:
            tx, _ = sent_transaction(0)
            tx = msgspec.structs.replace(tx, tenant=tenant)
            await deps.store.transactions.insert_one(to_document(tx))
            transaction_id = tx.id
        letter = DeadLetter(
            id=f"job:{tenant}",
            service="ingest",
            subject=Subjects.TX_ACCEPTED,
            stream_seq=1,
            deliveries=10,
            payload="{}",
            error="boom",
            at=datetime.now(UTC),
            transaction_id=transaction_id,
        )
        await keep_dead_letter(deps.store, letter)
        letters[tenant] = letter
    # Each letter is stamped with its transaction's tenant when it is kept.
    stamped = {raw["_id"]: raw.get("tenant") async for raw in deps.store.dead_letters.find()}
    assert stamped == {f"job:{t}": t for t in letters}

    admin = await issue_key(deps.store, TENANT, admin=True)
    async with make_client(api_key=admin, operator_tenant="platform-ops") as client:
        listed = (await client.get(_LETTERS)).json()["items"]
        assert [i["id"] for i in listed] == [letters[TENANT].id]
        for hidden in (letters[OTHER_TENANT], letters[None]):
            for method, suffix in (("GET", ""), ("POST", "/retry"), ("POST", "/discard")):
                answer = await client.request(method, f"{_LETTERS}/{hidden.id}{suffix}")
                assert answer.status_code == 404, (hidden.id, suffix)
                assert answer.json()["error"]["code"] == "DEAD_LETTER_NOT_FOUND"
        assert (await client.get(f"{_LETTERS}/{letters[TENANT].id}")).status_code == 200
    operator = await issue_key(deps.store, "platform-ops", admin=True)
    async with make_client(api_key=operator, operator_tenant="platform-ops") as client:
        listed = (await client.get(_LETTERS)).json()["items"]
        assert {i["id"] for i in listed} == {letter.id for letter in letters.values()}
