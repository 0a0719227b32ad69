"""Tracker test fixtures: the session's stack (tests/conftest.py), streams emptied per test."""

from __future__ import annotations

import pytest

from shared.service import Runtime

# The streams the tracker reads and writes; shared by the session, so emptied per test.
TRACKER_STREAMS = ("SES_EVENTS", "TX_STATUS", "MSG_STATUS", "CALLBACKS", "DLQ")


@pytest.fixture
async def tracker(runtime: Runtime) -> Runtime:
    """A runtime (fresh database) with the tracker's streams purged."""
    for stream in TRACKER_STREAMS:
        await runtime.broker.js.purge_stream(stream)
    return runtime
