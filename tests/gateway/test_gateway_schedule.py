"""The gateway's part of scheduling: send_at limits, cancel and reschedule requests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from services.gateway.deps import GatewayDeps
from shared.documents import Schedule, StatusEntry, Transaction, from_document
from shared.events import ControlAction, TxControl, decoder
from shared.status import TxStatus
from tests.gateway.conftest import ClientFactory, bearer
from tests.gateway.test_gateway_api import _error, _insert_tx, _submit, _template

Client = AsyncTestClient[Litestar]

HOUR = timedelta(hours=1)


@pytest.fixture
def tx_id() -> str:
    # Unique: a control request's Nats-Msg-Id is derived from it, and the stream remembers
    # ids for its duplicate window across tests.
    return uuid.uuid4().hex


def _stamp(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


async def _control(deps: GatewayDeps) -> list[TxControl]:
    """Every request handed to the scheduler, in order."""
    info = await deps.broker.js.stream_info("TX_CONTROL")
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await deps.broker.js.get_msg("TX_CONTROL", seq)
        found.append(decoder(TxControl).decode(msg.data))
    return found


async def _stored(deps: GatewayDeps, tx_id: str) -> Transaction:
    raw = await deps.store.transactions.find_one({"_id": tx_id})
    return from_document(raw, Transaction)


async def _scheduled(deps: GatewayDeps, tx_id: str, first: datetime, last: datetime) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    await _insert_tx(
        deps,
        tx_id,
        TxStatus.SCHEDULED,
        now,
        send_at=first,
        schedule=Schedule(slots=2, first_at=first, last_at=last),
        counters={"total": 4, "invalid": 0, "scheduled": 4},
        history=[
            StatusEntry(status=TxStatus.PROCESSING, at=now),
            StatusEntry(status=TxStatus.SCHEDULED, at=now),
        ],
    )


# --- limits of a submission's send_at ------------------------------------------------------


async def test_send_at_limits(client: Client) -> None:
    template_id = await _template(client)
    now = datetime.now(UTC)
    error = _error(
        await _submit(client, template_id, send_at=_stamp(now - timedelta(minutes=6))),
        400,
        "SEND_AT_IN_PAST",
    )
    assert error["details"]["field"] == "send_at"
    error = _error(
        await _submit(client, template_id, send_at=_stamp(now + timedelta(days=30, minutes=1))),
        400,
        "SEND_AT_TOO_FAR",
    )
    assert error["details"]["max_schedule_days"] == 30
    # Less than 5 minutes back means now; up to 30 days ahead is fine.
    for at in (now - timedelta(minutes=4), now + timedelta(days=29)):
        response = await _submit(client, template_id, send_at=_stamp(at))
        assert response.status_code == 202, response.text


async def test_the_limit_is_a_setting(make_client: ClientFactory) -> None:
    async with make_client(max_schedule_days=2) as client:
        template_id = await _template(client)
        at = _stamp(datetime.now(UTC) + timedelta(days=3))
        _error(await _submit(client, template_id, send_at=at), 400, "SEND_AT_TOO_FAR")


# --- cancel --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status",
    [TxStatus.ACCEPT, TxStatus.PROCESSING, TxStatus.SCHEDULED, TxStatus.READY_TO_SEND],
)
async def test_cancel_is_recorded_and_handed_to_the_scheduler(
    client: Client, deps: GatewayDeps, status: TxStatus, tx_id: str
) -> None:
    await _insert_tx(deps, tx_id, status, datetime.now(UTC))

    response = await client.post(f"/api/v1/transactions/{tx_id}/cancel")

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == status
    assert body["cancel_requested_at"] is not None
    stored = await _stored(deps, tx_id)
    assert stored.cancel_requested_at is not None
    assert await _control(deps) == [TxControl(transaction_id=tx_id, action=ControlAction.CANCEL)]

    # Asking again is answered the same way; the first time is kept.
    again = await client.post(f"/api/v1/transactions/{tx_id}/cancel")
    assert again.status_code == 202, again.text
    assert (await _stored(deps, tx_id)).cancel_requested_at == stored.cancel_requested_at


@pytest.mark.parametrize(
    "status", [TxStatus.SENT, TxStatus.COMPLETED, TxStatus.FAILED, TxStatus.CANCELLED]
)
async def test_what_is_sent_or_over_cannot_be_cancelled(
    client: Client, deps: GatewayDeps, status: TxStatus, tx_id: str
) -> None:
    await _insert_tx(deps, tx_id, status, datetime.now(UTC))

    error = _error(
        await client.post(f"/api/v1/transactions/{tx_id}/cancel"), 409, "TX_NOT_CANCELLABLE"
    )

    assert error["details"]["status"] == status
    assert (await _stored(deps, tx_id)).cancel_requested_at is None
    assert await _control(deps) == []


async def test_cancel_is_tenant_scoped(
    client: Client, deps: GatewayDeps, make_client: ClientFactory, tx_id: str
) -> None:
    _error(await client.post("/api/v1/transactions/nope/cancel"), 404, "TRANSACTION_NOT_FOUND")
    await _insert_tx(deps, tx_id, TxStatus.SCHEDULED, datetime.now(UTC))
    await deps.store.transactions.update_one({"_id": tx_id}, {"$set": {"tenant": "other"}})
    _error(await client.post(f"/api/v1/transactions/{tx_id}/cancel"), 404, "TRANSACTION_NOT_FOUND")
    assert (await _stored(deps, tx_id)).cancel_requested_at is None


# --- reschedule ----------------------------------------------------------------------------


async def test_reschedule_moves_every_slot_by_the_same_amount(
    client: Client, deps: GatewayDeps, tx_id: str
) -> None:
    first = datetime.now(UTC).replace(microsecond=0) + HOUR
    await _scheduled(deps, tx_id, first, first + 2 * HOUR)
    new = first + timedelta(days=1)

    response = await client.post(
        f"/api/v1/transactions/{tx_id}/reschedule", json={"send_at": new.isoformat()}
    )

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "SCHEDULED"
    assert body["send_at"] == _stamp(new)
    assert body["schedule"] == {
        "slots": 2,
        "first_slot_at": _stamp(new),
        "last_slot_at": _stamp(new + 2 * HOUR),
        "shift_seconds": 86400.0,
    }
    stored = await _stored(deps, tx_id)
    assert stored.schedule is not None
    assert (stored.schedule.generation, stored.schedule.first_at) == (1, first)
    assert await _control(deps) == [
        TxControl(transaction_id=tx_id, action=ControlAction.RESCHEDULE, generation=1)
    ]

    # Again, earlier: measured from the slots' own times, not from the last move.
    response = await client.post(
        f"/api/v1/transactions/{tx_id}/reschedule", json={"send_at": (first + HOUR).isoformat()}
    )
    assert response.status_code == 202, response.text
    assert response.json()["schedule"]["shift_seconds"] == 3600.0
    assert (await _control(deps))[-1].generation == 2


async def test_reschedule_limits(client: Client, deps: GatewayDeps, tx_id: str) -> None:
    first = datetime.now(UTC).replace(microsecond=0) + HOUR
    await _scheduled(deps, tx_id, first, first + timedelta(days=10))
    url = f"/api/v1/transactions/{tx_id}/reschedule"
    now = datetime.now(UTC)

    async def post(body: Any) -> Any:
        return await client.post(url, json=body)

    _error(await post({"send_at": _stamp(now - timedelta(minutes=6))}), 400, "SEND_AT_IN_PAST")
    _error(await post({"send_at": _stamp(now + timedelta(days=31))}), 400, "SEND_AT_TOO_FAR")
    # The first slot in 25 days puts the last one 35 days away.
    error = _error(
        await post({"send_at": _stamp(now + timedelta(days=25))}), 400, "SEND_AT_TOO_FAR"
    )
    assert "last_slot_at" in error["details"]
    _error(await post({"send_at": "tomorrow"}), 400, "INVALID_SEND_AT")
    _error(await post({"at": _stamp(now + HOUR)}), 400, "VALIDATION_ERROR")
    _error(await post({}), 400, "VALIDATION_ERROR")
    assert await _control(deps) == []


async def test_only_a_scheduled_transaction_can_be_rescheduled(
    client: Client, deps: GatewayDeps, tx_id: str
) -> None:
    first = datetime.now(UTC).replace(microsecond=0) + HOUR
    body = {"send_at": (first + HOUR).isoformat()}
    await _insert_tx(deps, "ready-" + tx_id, TxStatus.READY_TO_SEND, datetime.now(UTC))
    _error(
        await client.post("/api/v1/transactions/ready-" + tx_id + "/reschedule", json=body),
        409,
        "TX_NOT_RESCHEDULABLE",
    )
    await _scheduled(deps, tx_id, first, first)
    assert (await client.post(f"/api/v1/transactions/{tx_id}/cancel")).status_code == 202
    error = _error(
        await client.post(f"/api/v1/transactions/{tx_id}/reschedule", json=body),
        409,
        "TX_NOT_RESCHEDULABLE",
    )
    assert "cancel" in error["message"]
    _error(
        await client.post("/api/v1/transactions/nope/reschedule", json=body),
        404,
        "TRANSACTION_NOT_FOUND",
    )
    assert [c.action for c in await _control(deps)] == [ControlAction.CANCEL]


async def test_cancel_and_reschedule_need_a_key(make_client: ClientFactory, tx_id: str) -> None:
    async with make_client(api_key=None) as client:
        _error(await client.post(f"/api/v1/transactions/{tx_id}/cancel"), 401, "UNAUTHORIZED")
        response = await client.post(
            f"/api/v1/transactions/{tx_id}/reschedule",
            json={"send_at": "2030-01-01T00:00:00Z"},
            headers=bearer("ep_live_nope"),
        )
        _error(response, 401, "UNAUTHORIZED")


async def test_openapi_documents_cancel_and_reschedule(client: Client) -> None:
    spec = (await client.get("/schema/openapi.json")).json()
    cancel = spec["paths"]["/api/v1/transactions/{transaction_id}/cancel"]["post"]
    assert {"202", "404", "409"} <= set(cancel["responses"])
    assert "TX_NOT_CANCELLABLE" in cancel["responses"]["409"]["description"]
    reschedule = spec["paths"]["/api/v1/transactions/{transaction_id}/reschedule"]["post"]
    assert {"202", "400", "404", "409"} <= set(reschedule["responses"])
    assert "SEND_AT_TOO_FAR" in reschedule["responses"]["400"]["description"]
    body = reschedule["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = spec["components"]["schemas"][body.rsplit("/", 1)[1]]
    assert schema["required"] == ["send_at"]
    assert "ScheduleView" in spec["components"]["schemas"]
