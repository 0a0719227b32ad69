"""``GET /api/v1/alerts``: the recorded alerts, for admin keys, each tenant seeing only its
own transactions among those an alert names."""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec

from services.gateway.deps import GatewayDeps
from shared.alerts import change_alert, load_alert
from shared.clock import stored_now
from shared.events import Alert, AlertTransaction
from shared.status import AlertState
from tests.conftest import issue_key
from tests.gateway.conftest import TENANT, ClientFactory

OTHER_TENANT = "globex"


async def record(deps: GatewayDeps, alert: Alert) -> None:
    assert await change_alert(
        deps.store, deps.broker, await load_alert(deps.store, alert.rule), alert
    )


async def test_admins_see_firing_and_recently_resolved_alerts(
    make_client: ClientFactory, deps: GatewayDeps
) -> None:
    now = stored_now()
    await record(
        deps,
        Alert(
            rule="stuck_processing",
            state=AlertState.FIRING,
            since=now - timedelta(minutes=5),
            at=now - timedelta(minutes=5),
            summary="2 transaction(s) in ACCEPT or PROCESSING for over 30 min",
            transactions=[
                AlertTransaction(id="tx-own", tenant=TENANT),
                AlertTransaction(id="tx-theirs", tenant=OTHER_TENANT),
            ],
            details={"count": 2},
        ),
    )
    paused_at = now - timedelta(hours=2)
    paused = Alert(
        rule="sending_paused",
        state=AlertState.FIRING,
        since=paused_at,
        at=paused_at,
        reason="AccountSendingPausedException",
    )
    await record(deps, paused)
    resolved_at = now - timedelta(hours=1)
    await record(deps, msgspec.structs.replace(paused, state=AlertState.RESOLVED, at=resolved_at))
    long_ago = now - timedelta(days=3)
    old = Alert(rule="late_schedule", state=AlertState.FIRING, since=long_ago, at=long_ago)
    await record(deps, old)
    await record(deps, msgspec.structs.replace(old, state=AlertState.RESOLVED))

    admin = await issue_key(deps.store, TENANT, admin=True)
    async with make_client(api_key=admin) as client:
        answer = await client.get("/api/v1/alerts")
        assert answer.status_code == 200
        items = answer.json()["items"]
        assert [(a["rule"], a["state"]) for a in items] == [
            ("stuck_processing", "firing"),
            ("sending_paused", "resolved"),
        ]
        stuck, pause = items
        assert (stuck["transactions"], stuck["transactions_elsewhere"]) == (["tx-own"], 1)
        assert (stuck["until"], stuck["details"]) == (None, {"count": 2})
        assert pause["reason"] == "AccountSendingPausedException"
        assert datetime.fromisoformat(pause["until"]) == resolved_at

        wider = (await client.get("/api/v1/alerts?resolved_within_seconds=345600")).json()
        assert [a["rule"] for a in wider["items"]][-1] == "late_schedule"

    foreign = await issue_key(deps.store, OTHER_TENANT, admin=True)
    async with make_client(api_key=foreign) as client:
        stuck = (await client.get("/api/v1/alerts")).json()["items"][0]
        assert (stuck["transactions"], stuck["transactions_elsewhere"]) == (["tx-theirs"], 1)


async def test_alerts_need_an_admin_key(make_client: ClientFactory) -> None:
    async with make_client() as client:
        answer = await client.get("/api/v1/alerts")
        assert answer.status_code == 403
        assert answer.json()["error"]["code"] == "FORBIDDEN"
    async with make_client(api_key=None) as client:
        assert (await client.get("/api/v1/alerts")).status_code == 401
