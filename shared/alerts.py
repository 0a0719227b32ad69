"""Alerts: each rule's current state in ``alerts`` (``_id`` the rule) and one announcement
on ``email.alerts.<rule>`` per change (``shared.events.Alert``).

Several writers may see the same change at once -- tracker replicas evaluating the same
rules, sender replicas clearing the same pause -- so a change is a conditional update on the
state the writer read (its state and since when): one writer makes it and announces it, the
others match nothing and stay quiet. The record is written first and marked ``announced``
after the publish; a change whose announcement a crash cut off is announced again at the
next look (``announce_pending``), and its ``Nats-Msg-Id`` (rule, since, state) lets the
stream drop a repeat.
"""

from __future__ import annotations

from datetime import datetime

from pymongo.errors import DuplicateKeyError

from shared.broker import Broker
from shared.documents import AlertRecord, from_document, to_document
from shared.events import Alert
from shared.status import AlertState
from shared.store import Store
from shared.topology import Subjects

__all__ = [
    "announce_pending",
    "change_alert",
    "firing",
    "list_alerts",
    "load_alert",
    "refresh_alert",
]


async def load_alert(store: Store, rule: str) -> AlertRecord | None:
    raw = await store.alerts.find_one({"_id": rule})
    return None if raw is None else from_document(raw, AlertRecord)


async def list_alerts(store: Store) -> list[AlertRecord]:
    """Every rule's record: one document per rule, a handful in all."""
    return [from_document(raw, AlertRecord) async for raw in store.alerts.find({})]


def _as_read(previous: AlertRecord) -> dict[str, object]:
    return {
        "_id": previous.id,
        "alert.state": previous.alert.state,
        "alert.since": previous.alert.since,
    }


async def change_alert(
    store: Store, broker: Broker, previous: AlertRecord | None, alert: Alert
) -> bool:
    """Make ``alert`` the rule's state if it still is ``previous`` (None: no record yet),
    and announce it. False when another writer changed it first: nothing is written."""
    record = to_document(AlertRecord(id=alert.rule, alert=alert))
    if previous is None:
        try:
            await store.alerts.insert_one(record)
        except DuplicateKeyError:
            return False
    else:
        result = await store.alerts.replace_one(_as_read(previous), record)
        if result.matched_count == 0:
            return False
    await _announce(store, broker, alert)
    return True


async def refresh_alert(store: Store, previous: AlertRecord, alert: Alert) -> None:
    """New details (summary, transactions) of a rule still in the same state: recorded,
    not announced -- only changes of state are."""
    await store.alerts.update_one(
        _as_read(previous),
        {
            "$set": {
                "alert.summary": alert.summary,
                "alert.reason": alert.reason,
                "alert.transactions": to_document(alert)["transactions"],
                "alert.details": alert.details,
            }
        },
    )


async def announce_pending(store: Store, broker: Broker, records: list[AlertRecord]) -> None:
    """Announce the changes among ``records`` whose announcement never went out."""
    for record in records:
        if not record.announced:
            await _announce(store, broker, record.alert)


async def _announce(store: Store, broker: Broker, alert: Alert) -> None:
    await broker.publish(Subjects.alert(alert.rule), alert, msg_id=_msg_id(alert))
    await store.alerts.update_one(
        {"_id": alert.rule, "alert.state": alert.state, "alert.since": alert.since},
        {"$set": {"announced": True}},
    )


def _msg_id(alert: Alert) -> str:
    return f"alert:{alert.rule}:{_stamp(alert.since)}:{alert.state}"


def _stamp(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds")


def firing(alert: AlertRecord | None) -> bool:
    return alert is not None and alert.alert.state == AlertState.FIRING
