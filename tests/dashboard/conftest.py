"""The dashboard's tests use the gateway's fixtures: the app on the session's real stack."""

from tests.gateway.conftest import (  # noqa: F401 -- fixtures, found by name
    api_key,
    deps,
    gateway_settings,
    make_client,
)
