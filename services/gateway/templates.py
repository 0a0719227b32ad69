"""``/api/v1/templates``: store a template, once its placeholders are known."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_404_NOT_FOUND

from services.gateway.deps import Deps
from services.gateway.errors import ApiError, Code, error_responses
from services.gateway.records import find_template, insert_template, utc_now
from services.gateway.tenant import Tenant
from shared.documents import Template
from shared.log import get_logger
from shared.template import compile_template

__all__ = ["NewTemplate", "TemplateController", "TemplateCreated", "TemplateView"]

log = get_logger("gateway.templates")

_BODY_CHARS = 512 * 1024
_MARKETING = (
    "Bulk mail (newsletters, offers): every mail carries `List-Unsubscribe` with a one-click "
    "HTTPS link and `List-Unsubscribe-Post` (RFC 8058); a recipient who uses it is put on "
    "the tenant's suppression list. Leave false for transactional mail."
)


class NewTemplate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    subject: Annotated[str, msgspec.Meta(min_length=1, max_length=998)]
    html: Annotated[str, msgspec.Meta(max_length=_BODY_CHARS)] | None = None
    text: Annotated[str, msgspec.Meta(max_length=_BODY_CHARS)] | None = None
    marketing: Annotated[bool, msgspec.Meta(description=_MARKETING)] = False


class TemplateCreated(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    placeholders: list[str]
    marketing: bool
    created_at: datetime


class TemplateView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    subject: str
    html: str | None
    text: str | None
    placeholders: list[str]
    marketing: bool
    created_at: datetime


class TemplateController(Controller):
    path = "/templates"
    tags = ["templates"]  # noqa: RUF012 -- Litestar's declared attribute type is a list

    @post(
        status_code=HTTP_201_CREATED,
        summary="Create a template",
        description=(
            "Jinja2 syntax; at least one of `html` and `text`. `marketing: true` adds "
            "one-click unsubscribe headers to every mail (RFC 8058)."
        ),
        responses=error_responses(
            Code.VALIDATION_ERROR, Code.TEMPLATE_SYNTAX_ERROR, Code.UNSUPPORTED_MEDIA_TYPE
        ),
    )
    async def create_template(
        self, data: JSONBody[NewTemplate], deps: Deps, tenant: Tenant
    ) -> TemplateCreated:
        if data.html is None and data.text is None:
            raise ApiError(
                Code.VALIDATION_ERROR,
                "a template needs at least one of html and text",
                details={"fields": ["html", "text"]},
            )
        # Compiled, not only parsed: what the sender could not compile is refused here, as
        # TEMPLATE_SYNTAX_ERROR, and stored never. In a thread: a large template takes
        # seconds to compile, and the event loop serves every other request meanwhile.
        compiled = await asyncio.to_thread(compile_template, data.subject, data.html, data.text)
        names = compiled.placeholders
        template = Template(
            id=uuid.uuid4().hex,
            tenant=tenant,
            name=data.name,
            subject=data.subject,
            html=data.html,
            text=data.text,
            placeholders=names,
            marketing=data.marketing,
            created_at=utc_now(),
        )
        await insert_template(deps.store, template)
        log.info(
            "template created",
            template_id=template.id,
            placeholders=len(names),
            marketing=template.marketing,
        )
        return TemplateCreated(
            id=template.id,
            name=template.name,
            placeholders=template.placeholders,
            marketing=template.marketing,
            created_at=template.created_at,
        )

    @get(
        "/{template_id:str}",
        summary="Get a template",
        responses=error_responses(
            Code.VALIDATION_ERROR,
            Code.TEMPLATE_NOT_FOUND,
            overrides={Code.TEMPLATE_NOT_FOUND: HTTP_404_NOT_FOUND},
        ),
    )
    async def get_template(
        self, template_id: FromPath[str], deps: Deps, tenant: Tenant
    ) -> TemplateView:
        template = await find_template(deps.store, tenant, template_id)
        if template is None:
            raise ApiError(
                Code.TEMPLATE_NOT_FOUND,
                f"no template {template_id!r}",
                details={"template_id": template_id},
                status_code=HTTP_404_NOT_FOUND,
            )
        return TemplateView(
            id=template.id,
            name=template.name,
            subject=template.subject,
            html=template.html,
            text=template.text,
            placeholders=template.placeholders,
            marketing=template.marketing,
            created_at=template.created_at,
        )
