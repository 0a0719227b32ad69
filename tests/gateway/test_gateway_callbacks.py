"""The callbacks endpoints: a transaction's callbacks with every try, replaying one (sent by
the tracker's pump to a real receiver), and the tenant's webhook signing secret."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from standardwebhooks import Webhook

from services.gateway.deps import GatewayDeps
from services.tracker.callback_pump import CallbackPumpActor
from services.tracker.callback_retry import RetryPolicy
from services.tracker.callbacks import deliveries_of
from shared.actor import ActorRunner
from shared.callback_outbox import load_deliveries
from shared.documents import CallbackAttempt, Transaction, to_document
from shared.safe_http import parse_networks, safe_http_client
from shared.status import CallbackState
from shared.webhook_secrets import ensure_secret
from tests.conftest import issue_key
from tests.gateway.conftest import TENANT, ClientFactory
from tests.tracker.callback_receiver import TEST_NETWORKS, Receiver, run_until
from tests.tracker.tracker_builders import sent_transaction

OTHER_TENANT = "globex"


@pytest.fixture
async def callbacks(deps: GatewayDeps) -> GatewayDeps:
    """``deps`` with the callbacks' stream emptied (shared by the session)."""
    await deps.broker.js.purge_stream("CALLBACKS")
    return deps


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    await found.start()
    yield found
    await found.stop()


async def recorded(deps: GatewayDeps, url: str, tenant: str = TENANT) -> Transaction:
    """A SENT transaction of ``tenant`` and its three callbacks, as the tracker records them."""
    tx, _ = sent_transaction(0, callback_url=url)
    tx = msgspec.structs.replace(tx, tenant=tenant)
    await deps.store.transactions.insert_one(to_document(tx))
    now = datetime.now(UTC).replace(microsecond=0)
    await deps.store.callbacks.insert_many([to_document(d) for d in deliveries_of(tx, now)])
    return tx


async def test_a_transactions_callbacks_are_listed_in_order_for_its_tenant_only(
    make_client: ClientFactory, callbacks: GatewayDeps
) -> None:
    deps = callbacks
    tx = await recorded(deps, "https://hooks.example.com/a")
    theirs = await recorded(deps, "https://hooks.example.com/b", tenant=OTHER_TENANT)
    await deps.store.callbacks.update_one(
        {"_id": f"{tx.id}:1"},
        {
            "$set": {"state": CallbackState.DELIVERED},
            "$push": {
                "attempts": {
                    "$each": [
                        to_document(CallbackAttempt(at=tx.created_at, status_code=503)),
                        to_document(CallbackAttempt(at=tx.created_at, status_code=200)),
                    ]
                }
            },
        },
    )
    async with make_client() as client:
        answer = await client.get(f"/api/v1/transactions/{tx.id}/callbacks")
        assert answer.status_code == 200, answer.text
        items = answer.json()["items"]
        assert [i["callback_id"] for i in items] == [f"{tx.id}:{n}" for n in (1, 2, 3)]
        assert [(i["old_status"], i["new_status"]) for i in items] == [
            ("ACCEPT", "PROCESSING"),
            ("PROCESSING", "READY_TO_SEND"),
            ("READY_TO_SEND", "SENT"),
        ]
        first = items[0]
        assert first["state"] == "delivered"
        assert first["next_attempt_at"] is None
        assert [a["status_code"] for a in first["attempts"]] == [503, 200]
        assert first["payload"]["transaction_id"] == tx.id
        assert first["payload"]["event_type"] == "status_change"
        assert first["url"] == "https://hooks.example.com/a"
        assert items[1]["state"] == "pending"
        assert items[1]["next_attempt_at"] is not None

        for missing in (theirs.id, "tx-none"):
            refused = await client.get(f"/api/v1/transactions/{missing}/callbacks")
            assert refused.status_code == 404
            assert refused.json()["error"]["code"] == "TRANSACTION_NOT_FOUND"
            replay = await client.post(
                f"/api/v1/transactions/{missing}/callbacks/{missing}:1/replay"
            )
            assert replay.status_code == 404
            assert replay.json()["error"]["code"] == "TRANSACTION_NOT_FOUND"


async def test_a_replayed_callback_is_sent_again_with_its_id_and_a_new_try(
    make_client: ClientFactory, callbacks: GatewayDeps, receiver: Receiver
) -> None:
    deps = callbacks
    tx = await recorded(deps, receiver.url())
    # All three were delivered before.
    delivered = to_document(CallbackAttempt(at=tx.created_at, status_code=200))
    for seq in (1, 2, 3):
        await deps.store.callbacks.update_one(
            {"_id": f"{tx.id}:{seq}"},
            {"$set": {"state": CallbackState.DELIVERED}, "$push": {"attempts": delivered}},
        )
    async with make_client() as client:
        unknown = await client.post(f"/api/v1/transactions/{tx.id}/callbacks/{tx.id}:9/replay")
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == "CALLBACK_NOT_FOUND"
        answer = await client.post(f"/api/v1/transactions/{tx.id}/callbacks/{tx.id}:2/replay")
        assert answer.status_code == 202, answer.text
        assert answer.json()["state"] == "pending"

    # The tracker's pump sends it.
    policy = RetryPolicy(delays=(1.0,), retry_after_max=10.0)
    async with safe_http_client(allowed=parse_networks(TEST_NETWORKS), timeout=5.0) as http:
        pump = CallbackPumpActor(deps.store, deps.broker, http, policy, timeout=5.0)
        runner = ActorRunner(pump, deps.broker, deps.store, fetch_timeout=0.2)

        async def sent() -> bool:
            return bool(receiver.delivered())

        await run_until([runner], sent, 20)
    [again] = receiver.received
    assert again.webhook_id == f"{tx.id}:2"
    assert again.payload["new_status"] == "READY_TO_SEND"
    secret = await ensure_secret(deps.store, TENANT)
    assert again.verifies(secret.secret)
    found = {d.seq: d for d in await load_deliveries(deps.store, tx.id)}
    assert found[2].state == CallbackState.DELIVERED
    assert [(a.status_code, a.replay) for a in found[2].attempts] == [(200, False), (200, True)]
    assert len(found[1].attempts) == len(found[3].attempts) == 1

    async with make_client() as client:
        items = (await client.get(f"/api/v1/transactions/{tx.id}/callbacks")).json()["items"]
    assert [a["replay"] for a in items[1]["attempts"]] == [False, True]


async def test_webhook_secret_is_shown_once_and_rotates_with_a_grace_period(
    make_client: ClientFactory, deps: GatewayDeps
) -> None:
    async with make_client(webhook_secret_grace_seconds=3600.0) as client:
        none = (await client.get("/api/v1/webhook-secret")).json()
        assert none == {
            "configured": False,
            "secret": None,
            "created_at": None,
            "previous_valid_until": None,
            "disabled_urls": [],
        }
        # Made by the platform on the tenant's first callback: the next GET shows it, once.
        made = await ensure_secret(deps.store, TENANT)
        shown = (await client.get("/api/v1/webhook-secret")).json()
        assert shown["configured"] is True
        assert shown["secret"] == made.secret
        hidden = (await client.get("/api/v1/webhook-secret")).json()
        assert hidden["secret"] is None
        assert hidden["created_at"] == shown["created_at"]
        assert hidden["previous_valid_until"] is None

        rotated = await client.post("/api/v1/webhook-secret/rotate")
        assert rotated.status_code == 200, rotated.text
        body = rotated.json()
        assert body["secret"].startswith("whsec_")
        assert body["secret"] != made.secret
        Webhook(body["secret"])  # the scheme's library takes it as it is
        until = datetime.fromisoformat(body["previous_valid_until"])
        expected = datetime.now(UTC) + timedelta(hours=1)
        assert abs((until - expected).total_seconds()) < 10
        after = (await client.get("/api/v1/webhook-secret")).json()
        assert after["secret"] is None
        assert after["previous_valid_until"] == body["previous_valid_until"]

    # Another tenant's key sees its own (none), never this one.
    other = await issue_key(deps.store, OTHER_TENANT)
    async with make_client(api_key=other) as client:
        assert (await client.get("/api/v1/webhook-secret")).json()["configured"] is False
