"""``/api/v1/webhook-secret``: the tenant's callback signing secret (shared/webhook_secrets.py).

    GET                 whether there is one, when it was made, until when the previous one
                        still signs too, the disabled callback URLs; the secret itself only
                        in the first answer after the platform made it (first callback)
    POST .../rotate     a new secret (the first one, if there is none), in this answer only;
                        the previous one signs too for ``webhook_secret_grace_seconds``
                        (24 h); every disabled callback URL is enabled again

Any API key of the tenant may call them: whoever submits campaigns with a callback URL
needs to verify their callbacks.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec
from litestar import Controller, get, post
from litestar.status_codes import HTTP_200_OK

from services.gateway.deps import Deps, Settings
from services.gateway.errors import error_responses
from services.gateway.records import utc_now
from services.gateway.tenant import Tenant
from shared.log import get_logger
from shared.webhook_secrets import WebhookSecret, find_secret, reveal_secret, rotate_secret

__all__ = ["WebhookSecretController", "WebhookSecretView"]

log = get_logger("gateway.webhook_secrets")


class WebhookSecretView(msgspec.Struct, frozen=True, kw_only=True):
    # Whether the tenant has a secret (made on its first callback or by a rotation).
    configured: bool
    # ``whsec_...``: only in the answer to a rotation, or in the first answer after the
    # platform made it; null in every other. Keep it: it cannot be shown again.
    secret: str | None = None
    created_at: datetime | None = None
    # While a rotation's grace period lasts, the previous secret signs too until then.
    previous_valid_until: datetime | None = None
    # Callback URLs that answered 410 Gone: nothing is sent to them until the next rotation.
    disabled_urls: list[str] = []


def _view(stored: WebhookSecret, secret: str | None, now: datetime) -> WebhookSecretView:
    until = stored.previous_until
    return WebhookSecretView(
        configured=True,
        secret=secret,
        created_at=stored.created_at,
        previous_valid_until=until if until is not None and until > now else None,
        disabled_urls=stored.disabled_urls,
    )


class WebhookSecretController(Controller):
    path = "/webhook-secret"
    tags = ["callbacks"]  # noqa: RUF012 -- Litestar's declared attribute type is a list

    @get(
        summary="The tenant's callback signing secret: whether set, since when, rotation end",
        description=(
            "Never the secret itself, except in the first answer after the platform made "
            "it on the tenant's first callback."
        ),
        responses=error_responses(),
    )
    async def get_webhook_secret(self, deps: Deps, tenant: Tenant) -> WebhookSecretView:
        stored = await find_secret(deps.store, tenant)
        if stored is None:
            return WebhookSecretView(configured=False)
        secret = await reveal_secret(deps.store, tenant)
        if secret is not None:
            log.info("webhook secret revealed")
        return _view(stored, secret, utc_now())

    @post(
        "/rotate",
        status_code=HTTP_200_OK,
        summary="Make a new callback signing secret; the previous one signs too for a while",
        description=(
            "The answer holds the new secret, and no later answer will. Until "
            "`previous_valid_until` every callback carries both signatures, space-separated "
            "in `webhook-signature`. Callback URLs disabled by a 410 Gone are enabled again."
        ),
        responses=error_responses(),
    )
    async def rotate_webhook_secret(
        self, deps: Deps, settings: Settings, tenant: Tenant
    ) -> WebhookSecretView:
        grace = timedelta(seconds=settings.webhook_secret_grace_seconds)
        made = await rotate_secret(deps.store, tenant, grace)
        log.info("webhook secret rotated", grace_seconds=grace.total_seconds())
        return _view(made, made.secret, utc_now())
