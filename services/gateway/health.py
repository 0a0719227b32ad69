"""Probes: ``/health/live`` (the process answers) and ``/health/ready`` (it can do work);
and ``/metrics`` for Prometheus. All outside the API: no key."""

from __future__ import annotations

import msgspec
from litestar import Controller, MediaType, Response, get
from litestar.plugins.prometheus import PrometheusController
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from services.gateway.deps import Deps
from services.gateway.errors import Code, ErrorBody, ErrorDetail, error_responses
from shared.probes import readiness_checks

__all__ = ["HealthController", "Liveness", "MetricsController", "Readiness"]


class Liveness(msgspec.Struct, frozen=True, kw_only=True):
    status: str


class Readiness(msgspec.Struct, frozen=True, kw_only=True):
    status: str
    checks: dict[str, bool]


class HealthController(Controller):
    path = "/health"
    tags = ["health"]  # noqa: RUF012 -- Litestar's declared attribute type is a list

    @get("/live", summary="Liveness probe")
    async def live(self) -> Liveness:
        return Liveness(status="ok")

    @get(
        "/ready",
        summary="Readiness probe: NATS connected and the store answering",
        responses=error_responses(authenticated=False),
    )
    async def ready(self, deps: Deps) -> Response[Readiness | ErrorBody]:
        checks = await readiness_checks(deps.broker, deps.store)
        if all(checks.values()):
            return Response(Readiness(status="ready", checks=checks), status_code=HTTP_200_OK)
        return Response(
            ErrorBody(
                error=ErrorDetail(
                    code=Code.SERVICE_UNAVAILABLE,
                    message="not ready: " + ", ".join(k for k, ok in checks.items() if not ok),
                    details={"checks": checks},
                )
            ),
            status_code=HTTP_503_SERVICE_UNAVAILABLE,
            media_type=MediaType.JSON,
        )


class MetricsController(PrometheusController):
    """``GET /metrics``: prometheus-client's exposition of this process's metrics
    (shared/metrics.py). Not an API operation: left out of the OpenAPI document."""

    include_in_schema = False
