"""``/api/v1/suppressions``: the tenant's suppression list, the addresses it must not mail.

Bounces, complaints (the tracker) and unsubscribe links (``unsubscribe``) fill it; this API
lets a client read it, add an address by hand and take one off. Ingest marks a new
campaign's messages to a listed address SUPPRESSED, and the sender checks the entries added
after ingest (neither changes here).

An address is normalized as ingest normalizes a row's (email-validator's syntax, through
``normalize_email``), then lower-cased as ``suppression_id`` does, so ``Ada@Example.COM``
in a path and ``ada@example.com`` in a file are the same entry. An address that is not valid
is 400 ``VALIDATION_ERROR`` with ``details.field`` = ``email``.

The list is newest first, by (created_at, address). Another tenant's entries do not exist
here: every read and write is by ``<tenant>:<address>`` and filters by the tenant.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

import msgspec
from email_validator import EmailNotValidError
from litestar import Controller, Response, delete, get, put
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from services.gateway.cursor import (
    newest_after,
    newest_cursor,
)
from services.gateway.deps import Deps
from services.gateway.errors import ApiError, Code, error_responses
from services.gateway.records import (
    delete_suppression,
    find_suppression,
    insert_suppression,
    page_suppressions,
    utc_now,
)
from services.gateway.tenant import Tenant
from services.ingest.validation import normalize_email
from shared.documents import Suppression, suppression_id
from shared.log import get_logger

__all__ = [
    "MANUAL",
    "SuppressionController",
    "SuppressionInput",
    "SuppressionPage",
    "SuppressionView",
    "normalize_address",
]

log = get_logger("gateway.suppressions")

MANUAL: Final = "manual"
_MAX_ADDRESS_CHARS: Final = 320
_DEFAULT_LIMIT: Final = 50
_MAX_LIMIT: Final = 200

PageLimit = Annotated[int, QueryParameter(ge=1, le=_MAX_LIMIT, description="Page size.")]
Cursor = Annotated[
    str | None,
    QueryParameter(description="`next_cursor` of the previous page.", max_length=512),
]


class SuppressionInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The optional body of ``PUT /suppressions/{email}``."""

    reason: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=200,
            description="Why the address is suppressed; `manual` when there is no body.",
        ),
    ] = MANUAL


class SuppressionView(msgspec.Struct, frozen=True, kw_only=True):
    email: str
    # Who put it there: `manual` (or the reason given) through this API, `unsubscribed`,
    # or the tracker's bounce and complaint reasons.
    reason: str
    created_at: datetime


class SuppressionPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[SuppressionView]
    next_cursor: str | None


def normalize_address(value: str) -> str:
    """The address as the list keeps it, or 400 with the field."""
    address = value.strip()
    try:
        if not address or len(address) > _MAX_ADDRESS_CHARS:
            raise EmailNotValidError("not an email address")
        return normalize_email(address).lower()
    except EmailNotValidError as e:
        raise ApiError(
            Code.VALIDATION_ERROR,
            f"{value[:_MAX_ADDRESS_CHARS]!r} is not a valid email address ({e})",
            details={"field": "email", "value": value[:_MAX_ADDRESS_CHARS]},
        ) from e


def _view(entry: Suppression) -> SuppressionView:
    return SuppressionView(email=entry.email, reason=entry.reason, created_at=entry.created_at)


def _not_found(email: str) -> ApiError:
    return ApiError(
        Code.SUPPRESSION_NOT_FOUND,
        f"{email!r} is not on the suppression list",
        details={"email": email},
    )


class SuppressionController(Controller):
    path = "/suppressions"
    tags = ["suppressions"]  # noqa: RUF012 -- Litestar's declared attribute type is a list

    @get(
        summary="List the suppression list, newest first",
        responses=error_responses(Code.VALIDATION_ERROR, Code.INVALID_CURSOR),
    )
    async def list_suppressions(
        self,
        deps: Deps,
        tenant: Tenant,
        cursor: Cursor = None,
        limit: PageLimit = _DEFAULT_LIMIT,
    ) -> SuppressionPage:
        # The cursor holds the address; the listing resumes after its document's _id.
        resume = newest_after(cursor)
        after = None if resume is None else (resume[0], suppression_id(tenant, resume[1]))
        found = await page_suppressions(deps.store, tenant, after=after, limit=limit + 1)
        return SuppressionPage(
            items=[_view(entry) for entry in found[:limit]],
            next_cursor=newest_cursor([(s.created_at, s.email) for s in found], limit),
        )

    @get(
        "/{email:str}",
        summary="Whether an address is suppressed, and why",
        responses=error_responses(Code.VALIDATION_ERROR, Code.SUPPRESSION_NOT_FOUND),
    )
    async def get_suppression(
        self, email: FromPath[str], deps: Deps, tenant: Tenant
    ) -> SuppressionView:
        address = normalize_address(email)
        entry = await find_suppression(deps.store, tenant, suppression_id(tenant, address))
        if entry is None:
            raise _not_found(address)
        return _view(entry)

    @put(
        "/{email:str}",
        summary="Suppress an address",
        description=(
            "Adds the address to the list, with the body's `reason` or `manual`: 201 with "
            "the entry. Already there, it answers 200 with the entry as it is: its first "
            "reason (a bounce, say) is kept. From now on, new campaigns' messages to it are "
            "SUPPRESSED, and those not yet sent are not sent."
        ),
        status_code=HTTP_201_CREATED,
        responses={
            HTTP_200_OK: ResponseSpec(
                data_container=SuppressionView,
                description="The address was on the list already: its entry, unchanged",
                generate_examples=False,
            ),
            **error_responses(Code.VALIDATION_ERROR, Code.UNSUPPORTED_MEDIA_TYPE),
        },
    )
    async def add_suppression(
        self,
        email: FromPath[str],
        deps: Deps,
        tenant: Tenant,
        data: JSONBody[SuppressionInput | None] = None,
    ) -> Response[SuppressionView]:
        address = normalize_address(email)
        entry = Suppression(
            id=suppression_id(tenant, address),
            tenant=tenant,
            email=address,
            reason=MANUAL if data is None else data.reason,
            created_at=utc_now(),
        )
        while True:
            if await insert_suppression(deps.store, entry):
                log.info("suppression added", tenant=tenant, reason=entry.reason)
                return Response(_view(entry), status_code=HTTP_201_CREATED)
            kept = await find_suppression(deps.store, tenant, entry.id)
            # None: taken off between the two calls; put it back, as asked.
            if kept is not None:
                return Response(_view(kept), status_code=HTTP_200_OK)

    @delete(
        "/{email:str}",
        summary="Take an address off the list",
        description="New campaigns mail it again. 404 when it is not on the list.",
        status_code=HTTP_204_NO_CONTENT,
        responses=error_responses(Code.VALIDATION_ERROR, Code.SUPPRESSION_NOT_FOUND),
    )
    async def remove_suppression(self, email: FromPath[str], deps: Deps, tenant: Tenant) -> None:
        address = normalize_address(email)
        if not await delete_suppression(deps.store, tenant, suppression_id(tenant, address)):
            raise _not_found(address)
        log.info("suppression removed", tenant=tenant)
