"""What must hold once a chaos trial's campaign is over, checked on a snapshot of the
store, the simulator's log and the callback receiver (``observe``), by a pure function
(``violations``)."""

from __future__ import annotations

from collections import Counter
from typing import Any, Final

import httpx
import msgspec
from pymongo import MongoClient

from tests.chaos.campaign import Campaign
from tests.chaos.classify import Classification, classify

__all__ = [
    "Observation",
    "classification",
    "connect",
    "dead_letter_ids",
    "observe",
    "redelivered_callbacks",
    "violations",
]

_FINAL: Final = frozenset({"DELIVERED", "BOUNCED", "COMPLAINED", "FAILED", "SUPPRESSED"})
_SHOWN: Final = 5  # examples quoted per violation


class Observation(msgspec.Struct, frozen=True, kw_only=True):
    tx_status: str
    counters: dict[str, int]
    history_length: int
    statuses: dict[str, str]  # address -> the message's status
    messages: int  # message documents (more than ``statuses`` if an address came twice)
    sent_to: list[str]  # the simulator's log: one address per accepted SendEmail
    callbacks: dict[str, int]  # webhook-id -> times answered 200
    pending_callbacks: list[str]  # callback ids whose state is not final in the outbox
    new_dead_letters: list[str]  # "<kind> <service> <id>" of letters made during the trial


def observe(
    db: Any, sim_url: str, tx_id: str, callbacks: Counter[str], dead_before: set[str]
) -> Observation:
    """The snapshot; ``db`` a pymongo Database."""
    tx = db.transactions.find_one({"_id": tx_id}) or {}
    statuses: dict[str, str] = {}
    messages = 0
    for doc in db.messages.find({"transaction_id": tx_id}, {"email": 1, "status": 1}):
        statuses[str(doc["email"]).lower()] = str(doc["status"])
        messages += 1
    log = httpx.get(f"{sim_url}/_sim/sends", timeout=60).json()
    sent_to = [
        str(s["destination"][0]).lower()
        for s in log
        if s.get("tags", {}).get("transaction_id") == tx_id
    ]
    pending = [
        str(doc["_id"])
        for doc in db.callbacks.find({"transaction_id": tx_id}, {"state": 1})
        if doc.get("state") == "pending"
    ]
    letters = [
        f"{d.get('kind')} {d.get('service')} {d['_id']}"
        for d in db.dead_letters.find({}, {"kind": 1, "service": 1})
        if str(d["_id"]) not in dead_before
    ]
    prefix = f"{tx_id}:"
    return Observation(
        tx_status=str(tx.get("status")),
        counters=dict(tx.get("counters") or {}),
        history_length=len(tx.get("status_history") or []),
        statuses=statuses,
        messages=messages,
        sent_to=sent_to,
        callbacks={k: n for k, n in callbacks.items() if k.startswith(prefix)},
        pending_callbacks=pending,
        new_dead_letters=letters,
    )


def dead_letter_ids(db: Any) -> set[str]:
    return {str(d["_id"]) for d in db.dead_letters.find({}, {"_id": 1})}


def _some(items: Any) -> str:
    listed = sorted(items)
    return ", ".join(map(str, listed[:_SHOWN])) + (" ..." if len(listed) > _SHOWN else "")


def classification(campaign: Campaign, seen: Observation) -> Classification:
    return classify(campaign.expected, seen.sent_to)


def violations(campaign: Campaign, tx_id: str, seen: Observation) -> list[str]:
    """Every invariant that does not hold, as a line each; none when all do."""
    found: list[str] = []
    sorted_out = classification(campaign, seen)
    for name in ("lost", "duplicated", "unexpected"):
        keys = getattr(sorted_out, name)
        if keys:
            found.append(f"{len(keys)} {name} at SES: {_some(keys)}")
    if seen.tx_status != "COMPLETED":
        found.append(f"transaction {seen.tx_status}, not COMPLETED")
    wrong = {
        a: (seen.statuses.get(a), want)
        for a, want in campaign.expected.items()
        if seen.statuses.get(a) != want
    }
    if wrong:
        found.append(
            f"{len(wrong)} messages in the wrong status (is, want): {_some(wrong.items())}"
        )
    if seen.messages != len(campaign.expected):
        found.append(f"{seen.messages} message documents for {len(campaign.expected)} rows")
    stuck = [a for a, s in seen.statuses.items() if s not in _FINAL]
    if stuck:
        found.append(f"{len(stuck)} messages not final: {_some(stuck)}")
    recount = Counter(s.lower() for s in seen.statuses.values())
    counted = {k: v for k, v in seen.counters.items() if k not in ("total", "invalid") and v}
    if counted != dict(recount):
        found.append(f"counters {counted} != recount {dict(recount)}")
    totals = (seen.counters.get("total"), seen.counters.get("invalid"))
    if totals != (len(campaign.expected), campaign.invalid):
        found.append(
            f"total, invalid = {totals}, want {(len(campaign.expected), campaign.invalid)}"
        )
    # One callback per change after ACCEPT, webhook-id <tx>:<seq>; at least once each (a
    # redelivery is allowed: the receiver dedupes by webhook-id), none other.
    wanted = {f"{tx_id}:{seq}" for seq in range(1, seen.history_length)}
    missing, strangers = wanted - set(seen.callbacks), set(seen.callbacks) - wanted
    if missing:
        found.append(f"{len(missing)} callbacks never arrived: {_some(missing)}")
    if strangers:
        found.append(f"{len(strangers)} callbacks of no change: {_some(strangers)}")
    if seen.pending_callbacks:
        found.append(f"callbacks still pending: {_some(seen.pending_callbacks)}")
    if seen.new_dead_letters:
        found.append(f"{len(seen.new_dead_letters)} dead letters: {_some(seen.new_dead_letters)}")
    return found


def redelivered_callbacks(seen: Observation) -> int:
    return sum(n - 1 for n in seen.callbacks.values() if n > 1)


def connect(uri: str) -> MongoClient[dict[str, Any]]:
    """A client that fails fast while the store is down (the caller polls again)."""
    return MongoClient(
        uri, serverSelectionTimeoutMS=3000, connectTimeoutMS=2000, socketTimeoutMS=60_000
    )
