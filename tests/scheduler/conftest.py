"""Scheduler test fixtures: the session's stack (tests/conftest.py), streams emptied per test."""

from __future__ import annotations

import pytest

from shared.service import Runtime

# The streams the scheduler reads and writes; shared by the session, so emptied per test.
SCHEDULER_STREAMS = ("TX_INGESTED", "SCHEDULES", "TX_CONTROL", "SEND_BATCH", "TX_STATUS")


@pytest.fixture
async def scheduler(runtime: Runtime) -> Runtime:
    """A runtime (fresh database) with the scheduler's streams purged."""
    for stream in SCHEDULER_STREAMS:
        await runtime.broker.js.purge_stream(stream)
    return runtime
