"""``/api/v1/transactions/{id}/callbacks``: a transaction's callbacks and every try of each;
replaying one.

A transaction of another tenant answers 404 ``TRANSACTION_NOT_FOUND``, as a missing one. A
replay queues the callback again (shared/callback_outbox.py) and asks the tracker to send
it: 202, and the try appears in ``attempts`` (``replay: true``) once it is made. The
callback keeps its ``webhook-id``, so a receiver that kept it knows it has seen it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from litestar import Controller, get, post
from litestar.params import FromPath
from litestar.status_codes import HTTP_202_ACCEPTED

from services.gateway.deps import Deps
from services.gateway.errors import ApiError, Code, error_responses
from services.gateway.operator_actions import ActionKind, record_action
from services.gateway.records import utc_now
from services.gateway.tenant import Caller, Tenant, own_transaction
from shared.callback_outbox import announce_due, load_deliveries, request_replay
from shared.documents import CallbackAttempt, CallbackDelivery
from shared.log import get_logger
from shared.status import CallbackState, TxStatus

__all__ = ["CallbackAttemptView", "CallbackController", "CallbackList", "CallbackView"]

log = get_logger("gateway.callbacks")


class CallbackAttemptView(msgspec.Struct, frozen=True, kw_only=True):
    at: datetime
    # The receiver's answer; null when there was none (``error`` says why).
    status_code: int | None
    error: str | None
    duration_seconds: float
    # Not sent: the URL had answered 410 Gone before.
    skipped: bool
    # Made because of a replay.
    replay: bool


class CallbackView(msgspec.Struct, frozen=True, kw_only=True):
    # The ``webhook-id`` header of every try: "<transaction>:<seq>".
    callback_id: str
    # The change's place in the transaction's status history: callbacks go out in its order.
    seq: int
    old_status: TxStatus
    new_status: TxStatus
    url: str
    # pending (waiting for its turn, its time, or in flight), delivered, dead (every retry
    # failed) or skipped (the URL answered 410 Gone).
    state: CallbackState
    # Failed tries since it was recorded or last replayed.
    failures: int
    # When a pending callback is tried next; null otherwise.
    next_attempt_at: datetime | None
    # The body every try sends.
    payload: dict[str, Any]
    attempts: list[CallbackAttemptView]
    created_at: datetime
    updated_at: datetime


class CallbackList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[CallbackView]


def _attempt_view(attempt: CallbackAttempt) -> CallbackAttemptView:
    return CallbackAttemptView(
        at=attempt.at,
        status_code=attempt.status_code,
        error=attempt.error,
        duration_seconds=attempt.duration_seconds,
        skipped=attempt.skipped,
        replay=attempt.replay,
    )


def callback_view(delivery: CallbackDelivery) -> CallbackView:
    payload: dict[str, Any] = msgspec.json.decode(delivery.body)
    pending = delivery.state == CallbackState.PENDING
    return CallbackView(
        callback_id=delivery.id,
        seq=delivery.seq,
        old_status=delivery.old_status,
        new_status=delivery.new_status,
        url=delivery.url,
        state=delivery.state,
        failures=delivery.failures,
        next_attempt_at=delivery.next_attempt_at if pending else None,
        payload=payload,
        attempts=[_attempt_view(a) for a in delivery.attempts],
        created_at=delivery.created_at,
        updated_at=delivery.updated_at,
    )


class CallbackController(Controller):
    path = "/transactions/{transaction_id:str}/callbacks"
    tags = ["transactions"]  # noqa: RUF012 -- Litestar's declared attribute type is a list

    @get(
        summary="The transaction's callbacks, with every try of each",
        description=(
            "One callback per status change since ACCEPT, in the order of the changes "
            "(`seq`); none when the transaction has no `callback_url`."
        ),
        responses=error_responses(Code.VALIDATION_ERROR, Code.TRANSACTION_NOT_FOUND),
    )
    async def list_callbacks(
        self, transaction_id: FromPath[str], deps: Deps, tenant: Tenant
    ) -> CallbackList:
        tx = await own_transaction(deps, tenant, transaction_id)
        return CallbackList(
            items=[callback_view(d) for d in await load_deliveries(deps.store, tx.id)]
        )

    @post(
        "/{callback_id:str}/replay",
        status_code=HTTP_202_ACCEPTED,
        summary="Send a callback again",
        description=(
            "Whatever its state (delivered, dead, skipped, pending), the callback is queued "
            "to be sent now with a fresh retry schedule, after its transaction's earlier "
            "callbacks still pending; the try is added to its `attempts`. Same body, same "
            "`webhook-id`, a new `webhook-timestamp` and signature."
        ),
        responses=error_responses(
            Code.VALIDATION_ERROR, Code.TRANSACTION_NOT_FOUND, Code.CALLBACK_NOT_FOUND
        ),
    )
    async def replay_callback(
        self,
        transaction_id: FromPath[str],
        callback_id: FromPath[str],
        deps: Deps,
        tenant: Tenant,
        caller: Caller,
    ) -> CallbackView:
        tx = await own_transaction(deps, tenant, transaction_id)
        found = next(
            (d for d in await load_deliveries(deps.store, tx.id) if d.id == callback_id), None
        )
        if found is None:
            raise ApiError(
                Code.CALLBACK_NOT_FOUND,
                f"no callback {callback_id!r} of transaction {tx.id!r}",
                details={"transaction_id": tx.id, "callback_id": callback_id},
            )
        now = utc_now()
        await request_replay(deps.store, found, now)
        await announce_due(deps.broker, tx.id)
        await record_action(
            deps.store,
            caller,
            ActionKind.CALLBACK_REPLAY,
            transaction_id=tx.id,
            details={"callback_id": found.id, "state": found.state},
        )
        log.info("callback replay asked", transaction_id=tx.id, callback_id=found.id)
        replayed = msgspec.structs.replace(
            found,
            state=CallbackState.PENDING,
            failures=0,
            next_attempt_at=now,
            replay_requested=True,
            updated_at=now,
        )
        return callback_view(replayed)
