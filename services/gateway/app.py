"""The gateway's Litestar application (ARCHITECTURE §2).

``create_app(settings)`` opens its clients in the lifespan (NATS + topology, the store +
indexes, S3) and closes them on shutdown; ``create_app(settings, deps)`` uses clients the
caller already opened and owns (tests do this). Everything under ``API_PREFIX`` needs an API
key (``auth``); the probes, the schema, the unsubscribe links (``/u/{token}``, signed) and
the SNS webhook (``/api/v1/webhooks/ses``, outside the keyed router: SNS signs its messages)
do not, nor do the dashboard (``/dashboard``: its own session, see ``dashboard``) and the
API docs' assets (``api_docs``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi.spec import Components, SecurityScheme

from services.gateway.admin_transactions import AdminTransactionController
from services.gateway.alerts import AlertController
from services.gateway.api_docs import api_docs_assets, openapi_config
from services.gateway.audit import AuditController
from services.gateway.auth import SECURITY_SCHEME, ApiKeyAuth
from services.gateway.callbacks import CallbackController
from services.gateway.dashboard import TEMPLATE_CONFIG, dashboard_assets, dashboard_router
from services.gateway.dead_letters import DeadLetterController
from services.gateway.deps import GatewayDeps, open_deps, provide_deps, provide_settings
from services.gateway.errors import exception_handlers
from services.gateway.event_stream import EventStreamController
from services.gateway.health import HealthController, MetricsController
from services.gateway.json_body import require_json
from services.gateway.keys import KeyController
from services.gateway.suppressions import SuppressionController
from services.gateway.templates import TemplateController
from services.gateway.tenant import provide_caller, provide_tenant
from services.gateway.transactions import TransactionController
from services.gateway.unsubscribe import UnsubscribeController
from services.gateway.webhook_secrets import WebhookSecretController
from services.gateway.webhooks import SnsWebhookController, sns_verifier
from shared.settings import GatewaySettings, require_unsubscribe_secret

__all__ = ["API_PREFIX", "create_app"]

API_PREFIX = "/api/v1"


def _lifespan(
    settings: GatewaySettings,
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def clients(app: Litestar) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            app.state.deps = await open_deps(stack, settings)
            yield

    return clients


def create_app(settings: GatewaySettings, deps: GatewayDeps | None = None) -> Litestar:
    # The unsubscribe links cannot be checked without it: refuse to start (SettingsError).
    require_unsubscribe_secret(settings)
    # Made here so that a bad SNS_CERT_HOST_PATTERN or SNS_CA_FILE stops the start.
    state = State({"settings": settings, "sns_verifier": sns_verifier(settings)})
    if deps is not None:
        state.deps = deps
    api = Router(
        path=API_PREFIX,
        route_handlers=[
            TemplateController,
            TransactionController,
            SuppressionController,
            KeyController,
            CallbackController,
            WebhookSecretController,
            DeadLetterController,
            AdminTransactionController,
            AuditController,
            EventStreamController,
            AlertController,
        ],
        middleware=[ApiKeyAuth(settings)],
        guards=[require_json],
        security=[{SECURITY_SCHEME: []}],
    )
    return Litestar(
        route_handlers=[
            api,
            HealthController,
            MetricsController,
            UnsubscribeController,
            SnsWebhookController,
            dashboard_router(settings),
            dashboard_assets(),
            api_docs_assets(),
        ],
        template_config=TEMPLATE_CONFIG,
        dependencies={
            "deps": Provide(provide_deps, sync_to_thread=False),
            "settings": Provide(provide_settings, sync_to_thread=False),
            "tenant": Provide(provide_tenant, sync_to_thread=False),
            "caller": Provide(provide_caller, sync_to_thread=False),
        },
        state=state,
        lifespan=[] if deps is not None else [_lifespan(settings)],
        exception_handlers=exception_handlers(),
        openapi_config=openapi_config(
            title="Email Platform API",
            version="1.0.0",
            description="Submit email campaigns and follow their delivery.",
            components=Components(
                security_schemes={
                    SECURITY_SCHEME: SecurityScheme(
                        type="http",
                        scheme="bearer",
                        description="An API key: `Authorization: Bearer ep_live_...`.",
                    )
                }
            ),
        ),
        # Errors are logged by the exception handlers, through structlog.
        logging_config=None,
    )
