"""A service as its container runs it: ``email-platform service NAME``, stopped by SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from stack.launcher import StackInfo
from stack.processes import ProcessGroup, free_port
from tests.conftest import settings_for

CLI = Path(sys.executable).parent / "email-platform"
NATS_SERVER = Path(sys.executable).parent / "nats-server"


@contextmanager
def scheduler(stack_info: StackInfo, db_name: str, **env: str) -> Iterator[subprocess.Popen[str]]:
    """The scheduler as its container runs it; killed if a test leaves it running."""
    child = subprocess.Popen(
        [str(CLI), "service", "scheduler"],
        env={**os.environ, **settings_for(stack_info, db_name, LOG_FORMAT="json", **env)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield child
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()


def wait_started(child: subprocess.Popen[str], timeout: float = 30) -> None:
    """Until it logs "started" (its workers run)."""
    assert child.stdout is not None
    deadline = time.monotonic() + timeout
    line = ""
    while time.monotonic() < deadline and '"started"' not in line:
        line = child.stdout.readline()
        assert line or child.poll() is None, "the service exited during start-up"
    assert '"started"' in line


@contextmanager
def started_scheduler(stack_info: StackInfo, db_name: str) -> Iterator[subprocess.Popen[str]]:
    with scheduler(stack_info, db_name) as child:
        wait_started(child)
        yield child


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


def test_a_service_starting_while_jetstream_is_not_up_waits_for_it(
    stack_info: StackInfo, db_name: str, tmp_path: Path
) -> None:
    """NATS answers but JetStream does not yet (a server restarting; chaos: a gateway
    restarted during a NATS restart failed its topology requests and stayed down): the
    service asks again until the topology is made, then runs. Its own NATS here, started
    without JetStream and then again with it on the same port; the rest of the session's
    stack."""
    servers = ProcessGroup(tmp_path)
    port = free_port()
    plain = [str(NATS_SERVER), "-a", "127.0.0.1", "-p", str(port)]
    try:
        servers.start("nats", plain)
        servers.wait_ready("nats", lambda: _answers(port))
        with scheduler(stack_info, db_name, NATS_URL=f"nats://127.0.0.1:{port}") as child:
            time.sleep(3.0)
            assert child.poll() is None, "it gave up on JetStream"
            servers.stop("nats")
            servers.start("nats", [*plain, "-js", "-sd", str(tmp_path / "js")])
            wait_started(child, timeout=60)
            child.send_signal(signal.SIGTERM)
            assert child.wait(timeout=15) == 0
    finally:
        servers.stop_all()


def _answers(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
        return sock.recv(4).startswith(b"INFO")


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
