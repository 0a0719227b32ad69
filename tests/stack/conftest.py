"""Shared by the stack tests: real processes, so checks that they are really gone."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping

import pytest


def _gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.02)
    return False


def _survivors(pids: Mapping[str, int]) -> list[str]:
    return [name for name, pid in pids.items() if not _gone(pid)]


@pytest.fixture(scope="session")
def gone() -> Callable[[int], bool]:
    """``gone(pid)``: True once no process has that pid (waits up to 5 s)."""
    return _gone


@pytest.fixture(scope="session")
def survivors() -> Callable[[Mapping[str, int]], list[str]]:
    """``survivors({name: pid})``: the names whose process is still running after 5 s."""
    return _survivors
