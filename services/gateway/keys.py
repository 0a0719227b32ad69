"""``/api/v1/admin/keys``: an admin key manages the API keys of its own tenant.

Keys of other tenants do not exist as far as this API is concerned (404 ``KEY_NOT_FOUND``,
as for a missing key); a new tenant's first key comes from the operator's CLI
(``email-platform keys create``), which talks to the store directly.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from services.gateway.deps import Deps
from services.gateway.errors import ApiError, Code, error_responses
from services.gateway.tenant import Tenant, admin_only
from shared.api_keys import ApiKey, KeyMode, create_key, list_keys, revoke_key
from shared.log import get_logger

__all__ = ["KeyController", "KeyCreated", "KeyList", "KeyView", "NewKey"]

log = get_logger("gateway.keys")


class NewKey(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    mode: KeyMode = KeyMode.LIVE
    admin: bool = False
    label: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None


class KeyView(msgspec.Struct, frozen=True, kw_only=True):
    """A key as listed: never the key itself."""

    id: str
    prefix: str
    tenant: str
    mode: KeyMode
    admin: bool
    label: str | None
    created_at: datetime
    revoked_at: datetime | None


class KeyCreated(msgspec.Struct, frozen=True, kw_only=True):
    """The one answer that carries the key: it is not stored and cannot be shown again."""

    key: str
    id: str
    prefix: str
    tenant: str
    mode: KeyMode
    admin: bool
    label: str | None
    created_at: datetime


class KeyList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[KeyView]


def key_view(stored: ApiKey) -> KeyView:
    return KeyView(
        id=stored.key_id,
        prefix=stored.prefix,
        tenant=stored.tenant,
        mode=stored.mode,
        admin=stored.admin,
        label=stored.label,
        created_at=stored.created_at,
        revoked_at=stored.revoked_at,
    )


class KeyController(Controller):
    path = "/admin/keys"
    tags = ["admin"]  # noqa: RUF012 -- Litestar's declared attribute type is a list
    guards = [admin_only]  # noqa: RUF012 -- Litestar's declared attribute type is a list

    @post(
        status_code=HTTP_201_CREATED,
        summary="Create an API key for this tenant",
        description="The answer holds the key; only its hash is stored, so save it now.",
        responses=error_responses(
            Code.VALIDATION_ERROR, Code.FORBIDDEN, Code.UNSUPPORTED_MEDIA_TYPE
        ),
    )
    async def create_api_key(
        self, data: JSONBody[NewKey], deps: Deps, tenant: Tenant
    ) -> KeyCreated:
        key, stored = await create_key(
            deps.store, tenant=tenant, mode=data.mode, admin=data.admin, label=data.label
        )
        log.info("api key created", key_id=stored.key_id, mode=stored.mode, admin=stored.admin)
        return KeyCreated(
            key=key,
            id=stored.key_id,
            prefix=stored.prefix,
            tenant=stored.tenant,
            mode=stored.mode,
            admin=stored.admin,
            label=stored.label,
            created_at=stored.created_at,
        )

    @get(
        summary="List this tenant's API keys, newest first",
        responses=error_responses(Code.FORBIDDEN),
    )
    async def list_api_keys(self, deps: Deps, tenant: Tenant) -> KeyList:
        return KeyList(items=[key_view(k) for k in await list_keys(deps.store, tenant)])

    @post(
        "/{key_id:str}/revoke",
        status_code=HTTP_200_OK,
        summary="Revoke an API key of this tenant",
        description=(
            "For good; revoking a revoked key changes nothing. At once on the gateway"
            " replica that answers; other replicas, which take a key found active on trust"
            " for API_KEY_CACHE_SECONDS (1 s by default), refuse it within that time."
        ),
        responses=error_responses(Code.VALIDATION_ERROR, Code.FORBIDDEN, Code.KEY_NOT_FOUND),
    )
    async def revoke_api_key(self, key_id: FromPath[str], deps: Deps, tenant: Tenant) -> KeyView:
        revoked = await revoke_key(deps.store, key_id, tenant=tenant)
        if revoked is None:
            raise ApiError(Code.KEY_NOT_FOUND, f"no API key {key_id!r}", details={"key_id": key_id})
        deps.api_keys.forget(revoked.key_id)
        log.info("api key revoked", key_id=revoked.key_id)
        return key_view(revoked)
