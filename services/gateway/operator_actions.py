"""Operator actions: what a person asked for through the API, with who and when.

Every handler that changes a transaction or a dead letter on request -- cancel, reschedule,
retry-failed, a callback replay, a dead letter's retry or discard -- records one
``OperatorAction`` once the request has been carried out (a refused request changes nothing
and is not recorded). The transaction's audit trail (``services.gateway.audit``) shows them.
Written once, never changed nor deleted.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

import msgspec
from pymongo import ASCENDING

from services.gateway.records import utc_now
from shared.api_keys import ApiKey
from shared.documents import Operator, OperatorAction, from_document, to_document
from shared.store import Store, store_reachable

__all__ = [
    "ActionKind",
    "ActionView",
    "OperatorView",
    "action_view",
    "load_actions",
    "operator",
    "operator_view",
    "record_action",
]

# The most a transaction's audit trail shows; a transaction asked that often is a script.
_MAX_ACTIONS = 500


class ActionKind(StrEnum):
    CANCEL = "cancel"
    RESCHEDULE = "reschedule"
    RETRY_FAILED = "retry_failed"
    CALLBACK_REPLAY = "callback_replay"
    DEAD_LETTER_RETRY = "dead_letter_retry"
    DEAD_LETTER_DISCARD = "dead_letter_discard"


class OperatorView(msgspec.Struct, frozen=True, kw_only=True):
    """Who: the API key's public id and prefix, and its tenant."""

    key_id: str
    key_prefix: str
    tenant: str


class ActionView(msgspec.Struct, frozen=True, kw_only=True):
    action: ActionKind
    who: OperatorView
    at: datetime
    transaction_id: str | None
    dead_letter_id: str | None
    details: dict[str, Any]


def operator_view(who: Operator) -> OperatorView:
    return OperatorView(key_id=who.key_id, key_prefix=who.key_prefix, tenant=who.tenant)


def action_view(recorded: OperatorAction) -> ActionView:
    return ActionView(
        action=ActionKind(recorded.action),
        who=operator_view(recorded.who),
        at=recorded.at,
        transaction_id=recorded.transaction_id,
        dead_letter_id=recorded.dead_letter_id,
        details=recorded.details,
    )


def operator(caller: ApiKey) -> Operator:
    """The key as an audit trail names it: never the key itself."""
    return Operator(key_id=caller.key_id, key_prefix=caller.prefix, tenant=caller.tenant)


async def record_action(
    store: Store,
    caller: ApiKey,
    action: ActionKind,
    *,
    transaction_id: str | None = None,
    dead_letter_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> OperatorAction:
    recorded = OperatorAction(
        id=uuid.uuid4().hex,
        action=action,
        who=operator(caller),
        at=utc_now(),
        transaction_id=transaction_id,
        dead_letter_id=dead_letter_id,
        details=details or {},
    )
    with store_reachable("record operator action"):
        await store.operator_actions.insert_one(to_document(recorded))
    return recorded


async def load_actions(store: Store, transaction_id: str) -> list[OperatorAction]:
    """The transaction's operator actions, oldest first."""
    with store_reachable("read operator actions"):
        found = (
            await store.operator_actions.find({"transaction_id": transaction_id})
            .sort([("at", ASCENDING), ("_id", ASCENDING)])
            .to_list(_MAX_ACTIONS)
        )
    return [from_document(raw, OperatorAction) for raw in found]
