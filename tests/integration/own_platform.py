"""A platform on a stack of its own, for the tests that kill, stop or multiply services,
and the simulator's log of what it was sent."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

from stack.launcher import Stack
from stack.platform import Platform
from stack.processes import free_port


@contextmanager
def own_platform(
    root: Path,
    *,
    rate: int,
    service_env: Mapping[str, str],
    replicas: Mapping[str, int] | None = None,
) -> Iterator[Platform]:
    """The platform on its own stack (``environ={}``: every server of its own, whatever the
    session's stack put in os.environ), the simulator's ceiling at ``rate`` and its events
    straight onto NATS."""
    with own_stack_and_platform(root, rate=rate, service_env=service_env, replicas=replicas) as (
        _,
        running,
    ):
        yield running


@contextmanager
def own_stack_and_platform(
    root: Path,
    *,
    rate: int,
    service_env: Mapping[str, str],
    replicas: Mapping[str, int] | None = None,
) -> Iterator[tuple[Stack, Platform]]:
    """``own_platform``, and its stack, for the tests that stop one of its servers."""
    port = free_port()
    stack = Stack(
        root / "stack", gateway_port=port, ses_sink="nats", max_send_rate=rate, environ={}
    )
    with (
        stack as info,
        Platform(
            root,
            gateway_port=port,
            running_stack=info,
            replicas=dict(replicas or {}),
            service_env=dict(service_env),
        ) as running,
    ):
        yield stack, running


def sends_by_message(sim_url: str, tx_id: str) -> Counter[str]:
    """How many times the simulator was sent each message of the transaction."""
    log = httpx.get(f"{sim_url}/_sim/sends", timeout=30).json()
    return Counter(s["tags"]["message_id"] for s in log if s["tags"].get("transaction_id") == tx_id)
