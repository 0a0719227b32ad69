"""Every index of every collection, in one place; created at start-up by each service."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from shared.store import Collections

__all__ = ["INDEXES", "ensure_indexes"]

INDEXES: dict[str, list[IndexModel]] = {
    Collections.TRANSACTIONS: [
        IndexModel([("tenant", ASCENDING), ("created_at", DESCENDING)], name="tenant_newest"),
        IndexModel(
            [("tenant", ASCENDING), ("status", ASCENDING), ("created_at", DESCENDING)],
            name="tenant_status_newest",
        ),
        # ``GET /admin/transactions``: every tenant's, newest first, in one status or all.
        IndexModel(
            [("status", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)],
            name="status_newest",
        ),
        IndexModel([("created_at", DESCENDING), ("_id", DESCENDING)], name="newest"),
        # The tracker's alert rules and stuck-transaction recovery (services/tracker/alerts.py):
        # one status's transactions unchanged since a time, or ended since a time.
        IndexModel([("status", ASCENDING), ("updated_at", ASCENDING)], name="status_updated"),
    ],
    Collections.MESSAGES: [
        IndexModel([("transaction_id", ASCENDING), ("row", ASCENDING)], name="transaction_row"),
        # The sender reads one send batch's messages by it.
        IndexModel([("transaction_id", ASCENDING), ("batch", ASCENDING)], name="transaction_batch"),
        # ``GET .../messages?status=`` and retry-failed: one status's messages, by row (read
        # in row windows, see services/gateway/records.py ``page_messages``).
        IndexModel(
            [("transaction_id", ASCENDING), ("status", ASCENDING), ("row", ASCENDING)],
            name="transaction_status_row",
        ),
    ],
    # ``_id`` is "<tenant>:<email>"; the sender asks for a tenant's newest entries, those
    # added after ingest looked its messages up.
    Collections.SUPPRESSIONS: [
        IndexModel([("tenant", ASCENDING), ("created_at", ASCENDING)], name="tenant_created"),
        # ``GET /suppressions``: a tenant's list, newest first.
        IndexModel(
            [("tenant", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)],
            name="tenant_newest",
        ),
    ],
    # ``_id`` is the message id; an identity notification names only the SES id.
    Collections.SENDS: [
        IndexModel([("ses_message_id", ASCENDING)], name="ses_message_id", unique=True),
    ],
    Collections.ROW_ERRORS: [
        IndexModel(
            [("transaction_id", ASCENDING), ("error.row", ASCENDING)], name="transaction_row"
        ),
        # ``?code=`` on the errors endpoints: one code's errors, by row.
        IndexModel(
            [("transaction_id", ASCENDING), ("error.code", ASCENDING), ("error.row", ASCENDING)],
            name="transaction_code_row",
        ),
    ],
    Collections.TEMPLATES: [
        IndexModel([("tenant", ASCENDING), ("created_at", DESCENDING)], name="tenant_newest"),
    ],
    # ``callbacks`` has none: a transaction's are read by ``_id`` ("<tx>:<seq>", seq below
    # the number of statuses), with one ``$in``.
    Collections.DEAD_LETTERS: [
        IndexModel([("service", ASCENDING), ("at", DESCENDING)], name="service_newest"),
        # ``GET /admin/dead-letters``: newest first, all or of one kind (and service); the
        # operator's view, and a tenant's (the same with ``tenant`` first).
        IndexModel([("at", DESCENDING), ("_id", DESCENDING)], name="newest"),
        IndexModel(
            [("kind", ASCENDING), ("service", ASCENDING), ("at", DESCENDING), ("_id", DESCENDING)],
            name="kind_service_newest",
        ),
        IndexModel(
            [("tenant", ASCENDING), ("at", DESCENDING), ("_id", DESCENDING)],
            name="tenant_newest",
        ),
        IndexModel(
            [
                ("tenant", ASCENDING),
                ("kind", ASCENDING),
                ("service", ASCENDING),
                ("at", DESCENDING),
                ("_id", DESCENDING),
            ],
            name="tenant_kind_service_newest",
        ),
        # A transaction's audit trail.
        IndexModel([("transaction_id", ASCENDING), ("at", ASCENDING)], name="transaction_at"),
    ],
    # Written once each; read per transaction for its audit trail.
    Collections.OPERATOR_ACTIONS: [
        IndexModel([("transaction_id", ASCENDING), ("at", ASCENDING)], name="transaction_at"),
    ],
    # Authentication reads a key by ``_id`` (its hash); these serve listing and revoking.
    Collections.API_KEYS: [
        IndexModel([("key_id", ASCENDING)], name="key_id", unique=True),
        IndexModel([("tenant", ASCENDING), ("created_at", DESCENDING)], name="tenant_newest"),
    ],
    # ``_id`` is "<tenant>:<key>", which makes a key unique per tenant. A record is removed
    # once past its ``expires_at`` (the store's TTL sweep runs about once a minute).
    Collections.IDEMPOTENCY_KEYS: [
        IndexModel([("expires_at", ASCENDING)], name="expiry", expireAfterSeconds=0),
    ],
    # The scheduler reads a transaction's slots once, in firing order, when ingest hands
    # the transaction over (and again on reschedule); a fired slot is read by ``_id``.
    Collections.SLOTS: [
        IndexModel(
            [("transaction_id", ASCENDING), ("fire_at", ASCENDING)], name="transaction_fire"
        ),
        # The tracker's late-schedule rule: slots not fired yet whose time is past
        # (``fired_at`` null), and slots fired in the last window.
        IndexModel([("fired_at", ASCENDING), ("fire_at", ASCENDING)], name="fired_fire"),
    ],
}


async def ensure_indexes(db: AsyncDatabase[dict[str, Any]]) -> None:
    for collection, models in INDEXES.items():
        await db[collection].create_indexes(models)
