"""The sender against the real store, NATS and the SES simulator: claim, send, record."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError
from nats.js.api import DeliverPolicy
from prometheus_client import REGISTRY

from services.sender.sending import SenderActor, open_sender
from services.sender.ses import SesPaused, SesRejected, SesThrottled, classify
from shared.documents import (
    Batch,
    Message,
    S3Location,
    SendReceipt,
    StatusEntry,
    Suppression,
    Template,
    Transaction,
    message_id,
    suppression_id,
    to_document,
)
from shared.errors import RetryableError, UpstreamUnavailable
from shared.events import SendBatch
from shared.records import load_transaction
from shared.service import Runtime
from shared.settings import SenderSettings, load_settings
from shared.status import MessageStatus, TxStatus
from shared.topology import Subjects
from shared.transitions import move_messages
from shared.unsubscribe import verify_token
from stack.launcher import StackInfo
from tests.conftest import settings_for
from tests.msg_status import announced_rows

SENDER_ENV = {
    "SES_MAX_SEND_RATE": "500",
    "SEND_RETRY_MAX_WAIT_SECONDS": "0.3",
    "SEND_LEASE_SECONDS": "1",
    "SEND_RESOLVE_GRACE_SECONDS": "0.5",
    "SES_TIMEOUT_SECONDS": "0.5",
    "PAUSE_PROBE_SECONDS": "0.3",
}


async def open_test_sender(
    runtime: Runtime, stack_info: StackInfo, db_name: str, **extra: str
) -> SenderActor:
    env = settings_for(stack_info, db_name, **{**SENDER_ENV, **extra})
    return await open_sender(runtime, load_settings(SenderSettings, env))


@pytest.fixture
async def sender(runtime: Runtime, stack_info: StackInfo, db_name: str) -> SenderActor:
    await runtime.broker.js.purge_stream("TX_STATUS")
    # Nothing left unread by the tracker: a lost attempt is decided by the receipts alone.
    await runtime.broker.js.purge_stream("SES_EVENTS")
    return await open_test_sender(runtime, stack_info, db_name)


@pytest.fixture
async def sim(stack_info: StackInfo) -> AsyncIterator[httpx.AsyncClient]:
    assert stack_info.sim_url is not None
    async with httpx.AsyncClient(base_url=stack_info.sim_url, timeout=10) as client:
        yield client
        await client.delete("/_sim/faults")


async def ready_transaction(
    rt: Runtime,
    rows: dict[int, str],
    *,
    html: str = "<p>Hi {{ name }}</p>",
    mode: str = "live",
    marketing: bool = False,
) -> Transaction:
    """A transaction as the scheduler leaves it: READY_TO_SEND, one batch of messages."""
    now = datetime.now(UTC)
    tx_id = uuid.uuid4().hex
    template = Template(
        id=uuid.uuid4().hex,
        tenant="t",
        name="n",
        subject="Hello {{ name }}",
        html=html,
        placeholders=["name"],
        marketing=marketing,
        created_at=now,
    )
    await rt.store.templates.insert_one(to_document(template))
    tx = Transaction(
        id=tx_id,
        tenant="t",
        status=TxStatus.READY_TO_SEND,
        template_id=template.id,
        source=S3Location(bucket="b", key="k"),
        batches=1,
        counters={"total": len(rows), "invalid": 0, "ready_to_send": len(rows)},
        status_history=[
            StatusEntry(status=TxStatus.PROCESSING, at=now - timedelta(seconds=1)),
            StatusEntry(status=TxStatus.READY_TO_SEND, at=now),
        ],
        mode=mode,
        created_at=now,
        updated_at=now,
    )
    await rt.store.transactions.insert_one(to_document(tx))
    messages = [
        Message(
            id=message_id(tx_id, row),
            transaction_id=tx_id,
            tenant="t",
            batch=0,
            row=row,
            email=email,
            data={"name": f"N{row}"},
            status=MessageStatus.READY_TO_SEND,
        )
        for row, email in rows.items()
    ]
    await rt.store.messages.insert_many([to_document(m) for m in messages])
    batch = Batch(id=f"{tx_id}:0", transaction_id=tx_id, number=0, rows=list(rows))
    await rt.store.batches.insert_one(to_document(batch))
    return tx


async def statuses(rt: Runtime, tx_id: str) -> dict[int, dict[str, Any]]:
    return {m["row"]: m async for m in rt.store.messages.find({"transaction_id": tx_id})}


async def sends_of(sim: httpx.AsyncClient, tx: Transaction, rows: list[int]) -> list[int]:
    """How many sends of each row the simulator accepted."""
    return [len(await sends(sim, f"{tx.id}-{row}")) for row in rows]


async def sends(sim: httpx.AsyncClient, tagged_id: str) -> list[dict[str, Any]]:
    response = await sim.get("/_sim/sends", params={"message_id": tagged_id})
    found: list[dict[str, Any]] = response.json()
    return found


ROWS = {2: "success@simulator.amazonses.com", 3: "bounce@simulator.amazonses.com"}


async def test_a_batch_is_sent_once_and_recorded(
    runtime: Runtime, sender: SenderActor, sim: httpx.AsyncClient
) -> None:
    tx = await ready_transaction(runtime, ROWS)

    await sender.handle(SendBatch(transaction_id=tx.id, batch=0))

    messages = await statuses(runtime, tx.id)
    assert {row: m["status"] for row, m in messages.items()} == {2: "SENT", 3: "SENT"}
    assert all(m["attempts"] == 1 for m in messages.values())
    receipts = {r["_id"]: r async for r in runtime.store.sends.find({"transaction_id": tx.id})}
    logged = {row: (await sends(sim, f"{tx.id}-{row}"))[0] for row in ROWS}
    assert {k: r["ses_message_id"] for k, r in receipts.items()} == {
        message_id(tx.id, row): sent["ses_message_id"] for row, sent in logged.items()
    }
    after = await load_transaction(runtime.store, tx.id)
    assert after.status == TxStatus.SENT
    assert after.counters == {
        "total": 2,
        "invalid": 0,
        "ready_to_send": 0,
        "sending": 0,
        "sent": 2,
    }
    assert logged[2]["subject"] == "Hello N2"
    assert logged[2]["tags"] == {"message_id": f"{tx.id}-2", "transaction_id": tx.id, "row": "2"}

    # The same batch again (a redelivery): nothing is waiting, nothing is sent twice.
    await sender.handle(SendBatch(transaction_id=tx.id, batch=0))
    assert await sends_of(sim, tx, [2, 3]) == [1, 1]


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


async def test_a_chunk_is_about_a_second_of_the_rate(
    runtime: Runtime, stack_info: StackInfo, db_name: str
) -> None:
    """At 10/s a batch of 25 goes as chunks of 10, 10 and 5, each claimed (one attempt) and
    recorded SENT on its own: a slow account sees SENT grow every second, not per batch."""
    sender = await open_test_sender(runtime, stack_info, db_name, SES_MAX_SEND_RATE="10")
    rows = {row: f"success+{row}@simulator.amazonses.com" for row in range(2, 27)}
    tx = await ready_transaction(runtime, rows)

    await sender.handle(SendBatch(transaction_id=tx.id, batch=0))

    messages = await statuses(runtime, tx.id)
    assert {m["status"] for m in messages.values()} == {"SENT"}
    by_attempt = Counter(m["attempt_id"] for m in messages.values())
    assert sorted(by_attempt.values()) == [5, 10, 10]


async def test_throttling_then_5xx_lose_nothing_send_nothing_twice_and_show_backoff(
    runtime: Runtime, sender: SenderActor, sim: httpx.AsyncClient
) -> None:
    rows = {row: f"user{row}@example.org" for row in range(2, 42)}
    tx = await ready_transaction(runtime, rows)
    throttles = sample("email_ses_throttles_total")
    backoff = sample("email_ses_backoff_seconds_total")
    unavailable = sample("email_ses_sends_total", {"result": "unavailable"})
    await sim.post("/_sim/faults", json={"kind": "throttle", "seconds": 1.0})

    async def then_5xx() -> None:
        await asyncio.sleep(1.0)
        await sim.post("/_sim/faults", json={"kind": "error5xx", "status": 503, "seconds": 1.5})

    await asyncio.gather(sender.handle(SendBatch(transaction_id=tx.id, batch=0)), then_5xx())
    # A redelivery of the batch finds nothing waiting.
    await sender.handle(SendBatch(transaction_id=tx.id, batch=0))

    assert {m["status"] for m in (await statuses(runtime, tx.id)).values()} == {"SENT"}
    assert await sends_of(sim, tx, list(rows)) == [1] * len(rows)
    after = await load_transaction(runtime.store, tx.id)
    assert (after.status, after.counters["sent"], after.counters["sending"]) == (
        TxStatus.SENT,
        len(rows),
        0,
    )
    assert sample("email_ses_throttles_total") > throttles
    assert sample("email_ses_backoff_seconds_total") > backoff
    assert sample("email_ses_sends_total", {"result": "unavailable"}) > unavailable


async def test_a_message_out_of_retries_fails_into_the_dead_letters(
    runtime: Runtime, stack_info: StackInfo, db_name: str, sim: httpx.AsyncClient
) -> None:
    sender = await open_test_sender(runtime, stack_info, db_name, SEND_RETRY_ATTEMPTS="2")
    tx = await ready_transaction(runtime, {2: "ada@example.org"})
    await sim.post("/_sim/faults", json={"kind": "error5xx", "seconds": 30})

    await sender.handle(SendBatch(transaction_id=tx.id, batch=0))

    message = (await statuses(runtime, tx.id))[2]
    assert message["status"] == "FAILED"
    assert message["last_error"]["code"] == "RETRIES_EXHAUSTED"
    letter = await runtime.store.dead_letters.find_one({"message_id": message_id(tx.id, 2)})
    assert letter is not None
    assert (letter["kind"], letter["transaction_id"]) == ("message", tx.id)
    after = await load_transaction(runtime.store, tx.id)
    assert (after.status, after.counters["failed"]) == (TxStatus.SENT, 1)


async def test_a_paused_account_holds_every_send_until_it_is_cleared(
    runtime: Runtime, sender: SenderActor, sim: httpx.AsyncClient
) -> None:
    tx = await ready_transaction(runtime, ROWS)
    alerts = await runtime.broker.js.subscribe(
        Subjects.alert("sending_paused"), deliver_policy=DeliverPolicy.NEW
    )
    await sim.post("/_sim/faults", json={"kind": "paused", "seconds": 1.5})

    await sender.handle(SendBatch(transaction_id=tx.id, batch=0))

    # Nothing failed and nothing was lost: both went once the pause was over.
    assert {m["status"] for m in (await statuses(runtime, tx.id)).values()} == {"SENT"}
    assert await sends_of(sim, tx, [2, 3]) == [1, 1]
    states = [json.loads((await alerts.next_msg(timeout=5)).data)["state"] for _ in range(2)]
    assert states == ["firing", "resolved"]
    assert sample("email_sending_paused") == 0
    await alerts.unsubscribe()


async def test_a_lost_attempt_is_settled_by_its_receipts_before_anything_is_resent(
    runtime: Runtime, sender: SenderActor, sim: httpx.AsyncClient
) -> None:
    """A sender died after claiming rows 2 and 3; SES had accepted row 2 (its receipt came
    from the tracker's Send event). Row 2 becomes SENT unsent; row 3 is sent once."""
    tx = await ready_transaction(runtime, ROWS)
    lapsed = datetime.now(UTC) - timedelta(seconds=5)
    ids = [message_id(tx.id, row) for row in ROWS]
    await runtime.store.messages.update_many(
        {"_id": {"$in": ids}},
        {"$set": {"status": "SENDING", "attempt_id": "dead", "lease_until": lapsed}},
    )
    await runtime.store.transactions.update_one(
        {"_id": tx.id}, {"$set": {"counters.ready_to_send": 0, "counters.sending": 2}}
    )
    receipt = SendReceipt(
        id=ids[0], transaction_id=tx.id, ses_message_id="ses-2", at=lapsed, source="tracker"
    )
    await runtime.store.sends.insert_one(to_document(receipt))

    await sender.handle(SendBatch(transaction_id=tx.id, batch=0))

    assert {m["status"] for m in (await statuses(runtime, tx.id)).values()} == {"SENT"}
    assert await sends_of(sim, tx, [2, 3]) == [0, 1]
    after = await load_transaction(runtime.store, tx.id)
    assert (after.status, after.counters["sent"], after.counters["sending"]) == (
        TxStatus.SENT,
        2,
        0,
    )


async def test_an_unanswered_send_is_never_repeated_on_a_guess(
    runtime: Runtime, sender: SenderActor, sim: httpx.AsyncClient
) -> None:
    """SES took longer than the timeout: it may have the mail. The message stays SENDING
    and the batch comes back; its Send event's receipt settles it, with no second send."""
    tx = await ready_transaction(runtime, {2: "ada@example.org"})
    await sim.post("/_sim/faults", json={"kind": "slow", "delay": 1.0, "seconds": 5})

    with pytest.raises(RetryableError):
        await sender.handle(SendBatch(transaction_id=tx.id, batch=0))
    assert (await statuses(runtime, tx.id))[2]["status"] == "SENDING"
    await sim.delete("/_sim/faults")

    # Redelivered while the attempt's lease holds: nothing is sent.
    await runtime.store.messages.update_one(
        {"_id": message_id(tx.id, 2)},
        {"$set": {"lease_until": datetime.now(UTC) + timedelta(seconds=30)}},
    )
    with pytest.raises(RetryableError):
        await sender.handle(SendBatch(transaction_id=tx.id, batch=0))
    await runtime.store.messages.update_one(
        {"_id": message_id(tx.id, 2)},
        {"$set": {"lease_until": datetime.now(UTC) - timedelta(seconds=30)}},
    )
    # SES had the mail all along: the simulator logs it when its slow answer is done.
    for _ in range(50):
        logged = await sends(sim, f"{tx.id}-2")
        if logged:
            break
        await asyncio.sleep(0.1)
    assert len(logged) == 1
    receipt = SendReceipt(
        id=message_id(tx.id, 2),
        transaction_id=tx.id,
        ses_message_id=logged[0]["ses_message_id"],
        at=datetime.now(UTC),
        source="tracker",
    )
    await runtime.store.sends.insert_one(to_document(receipt))

    await sender.handle(SendBatch(transaction_id=tx.id, batch=0))

    assert (await statuses(runtime, tx.id))[2]["status"] == "SENT"
    assert len(await sends(sim, f"{tx.id}-2")) == 1
    assert (await load_transaction(runtime.store, tx.id)).status == TxStatus.SENT


async def test_a_message_a_render_cannot_fill_fails_alone(
    runtime: Runtime, sender: SenderActor, sim: httpx.AsyncClient
) -> None:
    tx = await ready_transaction(runtime, ROWS, html="<p>{{ name }} {{ name.no.such }}</p>")
    await sender.handle(SendBatch(transaction_id=tx.id, batch=0))
    messages = await statuses(runtime, tx.id)
    assert {m["status"] for m in messages.values()} == {"FAILED"}
    assert {m["last_error"]["code"] for m in messages.values()} == {"TEMPLATE_RENDER_ERROR"}
    after = await load_transaction(runtime.store, tx.id)
    assert after.status == TxStatus.SENT  # nothing left to send; some failed
    assert after.counters["failed"] == 2
    assert await sends_of(sim, tx, [2, 3]) == [0, 0]
    assert await announced_rows(runtime.broker, tx.id) == {"FAILED": [2, 3]}


@pytest.mark.parametrize(
    "html",
    [
        pytest.param(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            id="nested-max-ranges",
        ),
        pytest.param("{{ 9 ** (9 ** 9) }}", id="huge-power"),
        pytest.param("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", id="macro-recursion"),
        pytest.param("{{ name.__class__.__mro__ }}", id="attribute-walk"),
    ],
)
async def test_a_hostile_template_fails_each_message_instead_of_hanging_the_sender(
    runtime: Runtime, sender: SenderActor, sim: httpx.AsyncClient, html: str
) -> None:
    # What only a render can refuse is stored (the gateway cannot tell without the data);
    # the sender renders it on the render budget (shared.template_sandbox) and each
    # message fails, where unbounded the batch would hang or crash the sender.
    tx = await ready_transaction(runtime, ROWS, html=html)
    await sender.handle(SendBatch(transaction_id=tx.id, batch=0))
    messages = await statuses(runtime, tx.id)
    assert {m["status"] for m in messages.values()} == {"FAILED"}
    assert {m["last_error"]["code"] for m in messages.values()} == {"TEMPLATE_RENDER_ERROR"}
    assert await sends_of(sim, tx, [2, 3]) == [0, 0]


async def test_a_cancelled_transaction_sends_nothing(
    runtime: Runtime, sender: SenderActor, sim: httpx.AsyncClient
) -> None:
    tx = await ready_transaction(runtime, ROWS)
    await runtime.store.transactions.update_one(
        {"_id": tx.id}, {"$set": {"status": TxStatus.CANCELLED}}
    )
    await sender.handle(SendBatch(transaction_id=tx.id, batch=0))
    assert await sends_of(sim, tx, [2, 3]) == [0, 0]


async def test_a_cancel_request_stops_claiming_and_settles_cancelled(
    runtime: Runtime, sender: SenderActor, sim: httpx.AsyncClient
) -> None:
    tx = await ready_transaction(runtime, ROWS)
    await runtime.store.transactions.update_one(
        {"_id": tx.id}, {"$set": {"cancel_requested_at": datetime.now(UTC)}}
    )
    ids = [message_id(tx.id, row) for row in ROWS]
    # What the scheduler's cancel does to the waiting messages.
    assert (
        await move_messages(
            runtime.store, tx.id, ids, MessageStatus.READY_TO_SEND, MessageStatus.CANCELLED
        )
        == 2
    )
    await sender.handle(SendBatch(transaction_id=tx.id, batch=0))
    assert await sends_of(sim, tx, [2, 3]) == [0, 0]
    after = await load_transaction(runtime.store, tx.id)
    assert (after.status, after.counters["cancelled"]) == (TxStatus.CANCELLED, 2)


def _client_error(code: str, status: int, message: str = "m") -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "SendEmail",
    )


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("TooManyRequestsException", 429, SesThrottled),
        ("Throttling", 400, SesThrottled),
        ("SendingPausedException", 400, SesPaused),
        ("AccountSuspendedException", 400, SesPaused),
        ("LimitExceededException", 400, SesPaused),
        ("InternalFailure", 500, UpstreamUnavailable),
        ("ServiceUnavailable", 503, UpstreamUnavailable),
        ("MessageRejected", 400, SesRejected),
        ("MailFromDomainNotVerifiedException", 400, SesRejected),
        ("BadRequestException", 400, SesRejected),
    ],
)
def test_ses_errors_are_sorted_by_what_to_do(code: str, status: int, kind: type[Exception]) -> None:
    error = classify(_client_error(code, status))
    assert type(error) is kind


def test_a_used_up_daily_quota_pauses_rather_than_throttles() -> None:
    error = classify(_client_error("Throttling", 400, "Daily message quota exceeded."))
    assert type(error) is SesPaused


async def test_a_test_mode_transaction_reaches_only_the_mailbox_simulator(
    runtime: Runtime, sender: SenderActor, sim: httpx.AsyncClient
) -> None:
    rows = {2: "ada@example.org", 3: "bounce+x@simulator.amazonses.com"}
    tx = await ready_transaction(runtime, rows, mode="test")

    await sender.handle(SendBatch(transaction_id=tx.id, batch=0))

    sent = {row: (await sends(sim, f"{tx.id}-{row}"))[0]["destination"] for row in rows}
    assert sent == {
        2: ["success@simulator.amazonses.com"],
        3: ["bounce+x@simulator.amazonses.com"],
    }


async def test_a_live_transaction_goes_to_the_real_address(
    runtime: Runtime, sender: SenderActor, sim: httpx.AsyncClient
) -> None:
    tx = await ready_transaction(runtime, {2: "ada@example.org"})
    await sender.handle(SendBatch(transaction_id=tx.id, batch=0))
    assert (await sends(sim, f"{tx.id}-2"))[0]["destination"] == ["ada@example.org"]


async def test_marketing_mail_carries_a_one_click_unsubscribe_link(
    runtime: Runtime, sender: SenderActor, sim: httpx.AsyncClient, stack_info: StackInfo
) -> None:
    marketing = await ready_transaction(runtime, {2: "ada@example.org"}, marketing=True)
    plain = await ready_transaction(runtime, {2: "bob@example.org"})

    await sender.handle(SendBatch(transaction_id=marketing.id, batch=0))
    await sender.handle(SendBatch(transaction_id=plain.id, batch=0))

    headers = (await sends(sim, f"{marketing.id}-2"))[0]["headers"]
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = headers["List-Unsubscribe"].strip("<>")
    assert link.startswith(f"{stack_info.gateway_url}/u/")
    secret = settings_for(stack_info, "x")["UNSUBSCRIBE_SECRET"]
    assert verify_token(secret, link.rsplit("/", 1)[1]) == ("t", "ada@example.org")
    assert not (await sends(sim, f"{plain.id}-2"))[0].get("headers")


async def test_an_address_suppressed_after_ingest_is_not_sent(
    runtime: Runtime, sender: SenderActor, sim: httpx.AsyncClient
) -> None:
    tx = await ready_transaction(runtime, {2: "ada@example.org", 3: "Bob@Example.org"})
    # ada was on the list before ingest (which settled her, so it is not asked again);
    # bob unsubscribed between ingest and sending (another tenant's list does not count).
    old = Suppression(
        id=suppression_id("t", "ada@example.org"),
        tenant="t",
        email="ada@example.org",
        reason="complaint",
        created_at=datetime.now(UTC) - timedelta(days=1),
    )
    await runtime.store.suppressions.insert_one(to_document(old))
    for tenant in ("t", "other"):
        entry = Suppression(
            id=suppression_id(tenant, "bob@example.org"),
            tenant=tenant,
            email="bob@example.org",
            reason="unsubscribed",
            created_at=datetime.now(UTC),
        )
        await runtime.store.suppressions.insert_one(to_document(entry))

    await sender.handle(SendBatch(transaction_id=tx.id, batch=0))

    assert {r: m["status"] for r, m in (await statuses(runtime, tx.id)).items()} == {
        2: "SENT",
        3: "SUPPRESSED",
    }
    assert await sends_of(sim, tx, [2, 3]) == [1, 0]
    assert await announced_rows(runtime.broker, tx.id) == {"SUPPRESSED": [3]}
    after = await load_transaction(runtime.store, tx.id)
    assert (after.status, after.counters["suppressed"], after.counters["sent"]) == (
        TxStatus.SENT,
        1,
        1,
    )


async def test_a_claim_left_without_an_answer_is_retried_not_dropped(
    runtime: Runtime, sender: SenderActor, sim: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim's store transaction came back having moved nothing, and no cancel explains
    it: its commit may still land (a chaos trial saw one land after the sender had read the
    messages). The batch comes back later instead of being acked with them unsent."""
    tx = await ready_transaction(runtime, ROWS)
    real_move = sender._move

    async def unanswered(transaction_id: str, ids: Any, old: Any, new: Any, **options: Any) -> int:
        if new == MessageStatus.SENDING:
            return 0
        return await real_move(transaction_id, ids, old, new, **options)

    monkeypatch.setattr(sender, "_move", unanswered)
    with pytest.raises(RetryableError, match="unclaimed without a cancel"):
        await sender.handle(SendBatch(transaction_id=tx.id, batch=0))
    assert await sends_of(sim, tx, [2, 3]) == [0, 0]

    monkeypatch.setattr(sender, "_move", real_move)
    await sender.handle(SendBatch(transaction_id=tx.id, batch=0))
    assert await sends_of(sim, tx, [2, 3]) == [1, 1]


async def test_a_chunk_another_attempt_took_keeps_the_batch_from_being_acked(
    runtime: Runtime, sender: SenderActor, sim: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A redelivery of the batch runs beside this handling (after a NATS restart) and
    claims the chunk first. Acked, this handling would end the batch for good: the other
    attempt's nak is lost once the ack is in, and its messages would stay SENDING if it
    failed (a chaos trial). So the batch comes back until those messages are settled."""
    tx = await ready_transaction(runtime, ROWS)
    ids = [message_id(tx.id, row) for row in ROWS]
    real_move = sender._move

    async def beaten(transaction_id: str, to_move: Any, old: Any, new: Any, **options: Any) -> int:
        if new == MessageStatus.SENDING:
            lease = datetime.now(UTC) + timedelta(minutes=5)
            rival = {"attempt_id": "rival", "lease_until": lease}
            await move_messages(runtime.store, tx.id, ids, old, new, also_set=rival)
        return await real_move(transaction_id, to_move, old, new, **options)

    monkeypatch.setattr(sender, "_move", beaten)
    with pytest.raises(RetryableError, match="another attempt"):
        await sender.handle(SendBatch(transaction_id=tx.id, batch=0))
    assert await sends_of(sim, tx, [2, 3]) == [0, 0]
    messages = (await statuses(runtime, tx.id)).values()
    assert {(m["status"], m["attempt_id"]) for m in messages} == {("SENDING", "rival")}

    # Handled again while the rival's lease lives: still not acked.
    monkeypatch.setattr(sender, "_move", real_move)
    with pytest.raises(RetryableError):
        await sender.handle(SendBatch(transaction_id=tx.id, batch=0))


async def test_a_cancel_asked_before_the_claim_sends_nothing_and_acks(
    runtime: Runtime, sender: SenderActor, sim: httpx.AsyncClient
) -> None:
    # The scheduler has not yet cancelled the waiting messages: the claim moves none.
    tx = await ready_transaction(runtime, ROWS)
    await runtime.store.transactions.update_one(
        {"_id": tx.id}, {"$set": {"cancel_requested_at": datetime.now(UTC)}}
    )
    await sender.handle(SendBatch(transaction_id=tx.id, batch=0))
    assert await sends_of(sim, tx, [2, 3]) == [0, 0]
    assert {m["status"] for m in (await statuses(runtime, tx.id)).values()} == {"READY_TO_SEND"}
