"""A service as its container runs it: ``email-platform service NAME``, stopped by SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from stack.launcher import StackInfo
from tests.conftest import settings_for

CLI = Path(sys.executable).parent / "email-platform"


def test_a_service_starts_and_drains_on_sigterm(stack_info: StackInfo, db_name: str) -> None:
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
        started = ""
        while time.monotonic() < deadline and '"started"' not in started:
            started = child.stdout.readline()
            assert started or child.poll() is None, "the service exited during start-up"
        assert '"started"' in started
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=15) == 0
        rest = child.stdout.read()
        assert '"draining"' in rest
        assert '"stopped"' in rest
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()


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
