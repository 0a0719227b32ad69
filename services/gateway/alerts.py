"""``GET /api/v1/alerts``: the platform's current alerts, for an admin key.

What the tracker's rules found (services/tracker/alerts.py) and the sender's
``sending_paused``, read from the one place both record them (``alerts``, shared/alerts.py):
every rule firing now, and those resolved in the last ``resolved_within_seconds``.

The rules are the platform's, so the states, summaries and counts are the same for every
admin; the transactions an alert names are listed only when they are the caller's tenant's,
as everywhere else in the API (``transactions_elsewhere`` counts the others among the named).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec
from litestar import Controller, get
from litestar.params import Parameter

from services.gateway.deps import Deps
from services.gateway.errors import Code, error_responses
from services.gateway.tenant import Tenant, admin_only
from shared.alerts import list_alerts
from shared.documents import AlertRecord
from shared.status import AlertState
from shared.store import store_reachable

__all__ = ["AlertController", "AlertList", "AlertView"]


class AlertView(msgspec.Struct, frozen=True, kw_only=True):
    rule: str
    state: AlertState
    # When it started firing; when it stopped (None while firing).
    since: datetime
    until: datetime | None
    summary: str
    reason: str
    # The caller's transactions among those it names.
    transactions: list[str]
    transactions_elsewhere: int
    details: dict[str, Any]


class AlertList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[AlertView]


def alert_view(record: AlertRecord, tenant: str) -> AlertView:
    alert = record.alert
    own = [tx.id for tx in alert.transactions if tx.tenant == tenant]
    return AlertView(
        rule=alert.rule,
        state=alert.state,
        since=alert.since,
        until=alert.at if alert.state == AlertState.RESOLVED else None,
        summary=alert.summary,
        reason=alert.reason,
        transactions=own,
        transactions_elsewhere=len(alert.transactions) - len(own),
        details=alert.details,
    )


class AlertController(Controller):
    path = "/alerts"
    tags = ["admin"]  # noqa: RUF012 -- Litestar's declared attribute type is a list
    guards = [admin_only]  # noqa: RUF012 -- Litestar's declared attribute type is a list

    @get(
        summary="The platform's alerts: firing now, and recently resolved",
        description=(
            "The tracker's rules (stuck_processing, failure_rate, slow_processing, "
            "late_schedule, stuck_not_recovered) and the sender's sending_paused; firing "
            "ones first. Transactions are listed when they are this tenant's."
        ),
        responses=error_responses(Code.VALIDATION_ERROR, Code.FORBIDDEN),
    )
    async def list_current_alerts(
        self,
        deps: Deps,
        tenant: Tenant,
        resolved_within_seconds: Annotated[
            int, Parameter(ge=0, le=30 * 86_400, description="Resolved alerts this recent.")
        ] = 86_400,
    ) -> AlertList:
        with store_reachable("list alerts"):
            records = await list_alerts(deps.store)
        oldest = datetime.now(UTC) - timedelta(seconds=resolved_within_seconds)
        shown = [
            record
            for record in records
            if record.alert.state == AlertState.FIRING or record.alert.at >= oldest
        ]
        shown.sort(key=lambda r: (r.alert.state != AlertState.FIRING, -r.alert.since.timestamp()))
        return AlertList(items=[alert_view(record, tenant) for record in shown])
