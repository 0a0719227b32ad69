"""``/api/v1/admin/dead-letters``: the work the platform gave up on, for manual review.

Admin keys only (403 ``FORBIDDEN`` otherwise), and platform-wide: dead letters are the
operator's, and a job letter (an undecodable NATS message, say) may name no tenant at all.
List (newest first, by kind), show (the payload, the error, the deliveries or tries, the
review's history), retry and discard: see ``services.gateway.review``. Each retry and
discard is also an operator action of the letter's transaction (its audit trail).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final

import msgspec
import structlog
from litestar import Controller, get, post
from litestar.params import FromPath, QueryParameter
from litestar.status_codes import HTTP_200_OK

from services.gateway.cursor import (
    newest_after,
    newest_cursor,
)
from services.gateway.deps import Deps, Settings
from services.gateway.errors import Code, error_responses
from services.gateway.operator_actions import (
    ActionKind,
    OperatorView,
    operator,
    operator_view,
    record_action,
)
from services.gateway.review import (
    LetterKind,
    discard_letter,
    find_letter,
    letter_kind,
    page_letters,
    retry_letter,
)
from services.gateway.tenant import Caller, admin_only, review_scope
from shared.documents import DeadLetter, DeadLetterEntry
from shared.log import get_logger
from shared.status import DeadLetterState

__all__ = [
    "DeadLetterController",
    "DeadLetterEntryView",
    "DeadLetterItem",
    "DeadLetterPage",
    "DeadLetterView",
    "dead_letter_item",
]

log = get_logger("gateway.dead_letters")

_DEFAULT_LIMIT: Final = 50
_MAX_LIMIT: Final = 200

KindFilter = Annotated[
    LetterKind | None,
    QueryParameter(
        description=(
            "Only letters of this kind: `ingest_job`, `send_batch`, `schedule_job`, `event` "
            "(NATS messages of ingest, the sender, the scheduler, the tracker), `job` (any of "
            "those), `callback`, `message` (one recipient out of send retries)."
        )
    ),
]
PageLimit = Annotated[int, QueryParameter(ge=1, le=_MAX_LIMIT, description="Page size.")]
Cursor = Annotated[
    str | None,
    QueryParameter(description="`next_cursor` of the previous page.", max_length=512),
]


class DeadLetterItem(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    kind: LetterKind
    # open, retried or discarded.
    state: DeadLetterState
    service: str
    # Where the work was: a job's subject (a retry republishes to it).
    subject: str
    transaction_id: str | None
    # A message letter's message, a callback letter's callback (its ``webhook-id``).
    message_id: str | None
    error: str
    # A job's deliveries, a message's send attempts, a callback's tries.
    attempts: int
    at: datetime


class DeadLetterEntryView(msgspec.Struct, frozen=True, kw_only=True):
    # retried, retry_failed (the retry could not be handed over: open again), discarded.
    action: str
    at: datetime
    who: OperatorView
    details: dict[str, Any]


class DeadLetterView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    kind: LetterKind
    state: DeadLetterState
    service: str
    subject: str
    transaction_id: str | None
    message_id: str | None
    error: str
    attempts: int
    at: datetime
    # A job's position in its stream (0 for message and callback letters).
    stream_seq: int
    # The work itself, as text: a job's NATS payload, a callback's body, a message's id and
    # address.
    payload: str
    history: list[DeadLetterEntryView]


class DeadLetterPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[DeadLetterItem]
    next_cursor: str | None


def dead_letter_item(letter: DeadLetter) -> DeadLetterItem:
    return DeadLetterItem(
        id=letter.id,
        kind=letter_kind(letter),
        state=letter.state,
        service=letter.service,
        subject=letter.subject,
        transaction_id=letter.transaction_id,
        message_id=letter.message_id,
        error=letter.error,
        attempts=letter.deliveries,
        at=letter.at,
    )


def _entry_view(entry: DeadLetterEntry) -> DeadLetterEntryView:
    return DeadLetterEntryView(
        action=entry.action, at=entry.at, who=operator_view(entry.who), details=entry.details
    )


def dead_letter_view(letter: DeadLetter) -> DeadLetterView:
    return DeadLetterView(
        id=letter.id,
        kind=letter_kind(letter),
        state=letter.state,
        service=letter.service,
        subject=letter.subject,
        transaction_id=letter.transaction_id,
        message_id=letter.message_id,
        error=letter.error,
        attempts=letter.deliveries,
        at=letter.at,
        stream_seq=letter.stream_seq,
        payload=letter.payload,
        history=[_entry_view(e) for e in letter.history],
    )


class DeadLetterController(Controller):
    path = "/admin/dead-letters"
    tags = ["admin"]  # noqa: RUF012 -- Litestar's declared attribute type is a list
    guards = [admin_only]  # noqa: RUF012 -- Litestar's declared attribute type is a list

    @get(
        summary="List dead letters, newest first",
        description=(
            "The caller's tenant's dead letters; the operator tenant's admin keys "
            "(`OPERATOR_TENANT`) see every tenant's, and those that name none. Filter by "
            "`kind`."
        ),
        responses=error_responses(Code.VALIDATION_ERROR, Code.FORBIDDEN, Code.INVALID_CURSOR),
    )
    async def list_dead_letters(
        self,
        deps: Deps,
        settings: Settings,
        caller: Caller,
        kind: KindFilter = None,
        cursor: Cursor = None,
        limit: PageLimit = _DEFAULT_LIMIT,
    ) -> DeadLetterPage:
        found = await page_letters(
            deps.store,
            tenant=review_scope(settings, caller),
            kind=kind,
            after=newest_after(cursor),
            limit=limit + 1,
        )
        page = found[:limit]
        next_cursor = newest_cursor([(letter.at, letter.id) for letter in found], limit)
        return DeadLetterPage(items=[dead_letter_item(x) for x in page], next_cursor=next_cursor)

    @get(
        "/{letter_id:str}",
        summary="A dead letter: its payload, error, attempts and review history",
        responses=error_responses(
            Code.VALIDATION_ERROR, Code.FORBIDDEN, Code.DEAD_LETTER_NOT_FOUND
        ),
    )
    async def get_dead_letter(
        self, letter_id: FromPath[str], deps: Deps, settings: Settings, caller: Caller
    ) -> DeadLetterView:
        scope = review_scope(settings, caller)
        return dead_letter_view(await find_letter(deps.store, scope, letter_id))

    @post(
        "/{letter_id:str}/retry",
        status_code=HTTP_200_OK,
        summary="Put a dead letter's work back",
        description=(
            "A job's payload is republished to its subject (message id "
            "`<letter>:retry:<n>`), a callback is replayed; a `message` letter is 409 "
            "`DEAD_LETTER_NOT_RETRYABLE` (use retry-failed on its transaction). Once per "
            "letter: a retried or discarded one is 409 `DEAD_LETTER_CLOSED`. Recorded in the "
            "letter's `history` and as an operator action of its transaction. No body."
        ),
        responses=error_responses(
            Code.VALIDATION_ERROR,
            Code.FORBIDDEN,
            Code.DEAD_LETTER_NOT_FOUND,
            Code.DEAD_LETTER_CLOSED,
            Code.DEAD_LETTER_NOT_RETRYABLE,
        ),
    )
    async def retry_dead_letter(
        self, letter_id: FromPath[str], deps: Deps, settings: Settings, caller: Caller
    ) -> DeadLetterView:
        letter = await find_letter(deps.store, review_scope(settings, caller), letter_id)
        with structlog.contextvars.bound_contextvars(transaction_id=letter.transaction_id):
            retried = await retry_letter(deps.store, deps.broker, letter, operator(caller))
            await record_action(
                deps.store,
                caller,
                ActionKind.DEAD_LETTER_RETRY,
                transaction_id=letter.transaction_id,
                dead_letter_id=letter.id,
                details={"kind": letter_kind(letter), **retried.history[-1].details},
            )
            log.info("dead letter retried", dead_letter_id=letter.id, kind=letter_kind(letter))
        return dead_letter_view(retried)

    @post(
        "/{letter_id:str}/discard",
        status_code=HTTP_200_OK,
        summary="Set a dead letter aside for good",
        description=(
            "Marks it discarded (it is kept, never deleted); a retried or discarded one is "
            "409 `DEAD_LETTER_CLOSED`. Recorded like a retry. No body."
        ),
        responses=error_responses(
            Code.VALIDATION_ERROR,
            Code.FORBIDDEN,
            Code.DEAD_LETTER_NOT_FOUND,
            Code.DEAD_LETTER_CLOSED,
        ),
    )
    async def discard_dead_letter(
        self, letter_id: FromPath[str], deps: Deps, settings: Settings, caller: Caller
    ) -> DeadLetterView:
        letter = await find_letter(deps.store, review_scope(settings, caller), letter_id)
        with structlog.contextvars.bound_contextvars(transaction_id=letter.transaction_id):
            discarded = await discard_letter(deps.store, letter, operator(caller))
            await record_action(
                deps.store,
                caller,
                ActionKind.DEAD_LETTER_DISCARD,
                transaction_id=letter.transaction_id,
                dead_letter_id=letter.id,
                details={"kind": letter_kind(letter)},
            )
            log.info("dead letter discarded", dead_letter_id=letter.id, kind=letter_kind(letter))
        return dead_letter_view(discarded)
