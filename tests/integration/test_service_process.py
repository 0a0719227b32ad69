"""A service as its container runs it: ``email-platform service NAME``, stopped by SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from stack.launcher import StackInfo
from tests.conftest import settings_for

CLI = Path(sys.executable).parent / "email-platform"


@contextmanager
def started_scheduler(stack_info: StackInfo, db_name: str) -> Iterator[subprocess.Popen[str]]:
    """The scheduler as its container runs it, once it logged "started"; killed if a test
    leaves it running."""
    env = {**os.environ, **settings_for(stack_info, db_name, LOG_FORMAT="json")}
    child = subprocess.Popen(
        [str(CLI), "service", "scheduler"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert child.stdout is not None
        deadline = time.monotonic() + 30
        line = ""
        while time.monotonic() < deadline and '"started"' not in line:
            line = child.stdout.readline()
            assert line or child.poll() is None, "the service exited during start-up"
        assert '"started"' in line
        yield child
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()


def test_a_service_starts_and_drains_on_sigterm(stack_info: StackInfo, db_name: str) -> None:
    with started_scheduler(stack_info, db_name) as child:
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=15) == 0
        assert child.stdout is not None
        rest = child.stdout.read()
    assert '"draining"' in rest
    assert '"stopped"' in rest


def test_a_stopping_service_is_not_killed_by_more_sigterms(
    stack_info: StackInfo, db_name: str
) -> None:
    """SIGTERM again and again until it is gone (a second stop, one to the process group):
    it drains once and exits 0, never killed by a signal on its way out."""
    with started_scheduler(stack_info, db_name) as child:
        deadline = time.monotonic() + 15
        while child.poll() is None and time.monotonic() < deadline:
            child.send_signal(signal.SIGTERM)
            time.sleep(0.005)
        assert child.wait(timeout=1) == 0
        assert child.stdout is not None
        rest = child.stdout.read()
    assert rest.count('"draining"') == 1


def test_an_unknown_service_is_refused() -> None:
    wide = {**os.environ, "COLUMNS": "300"}  # keep the error on one line
    result = subprocess.run(
        [str(CLI), "service", "mailer"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=wide,
    )
    assert result.returncode == 2
    assert "gateway, ingest, scheduler, sender, tracker" in result.stderr
