"""Child processes the launcher starts and stops: the stack's servers, or the platform services.

Every child

- writes stdout and stderr to ``<dir>/logs/<name>.log``;
- gets ``SIGTERM`` when the thread that started it dies, even on ``kill -9`` of the parent
  (Linux ``prctl(PR_SET_PDEATHSIG)``) — so start children from a long-lived thread (the main
  thread), never from a short-lived worker thread;
- runs in its own session, so a terminal's Ctrl-C reaches only the parent, which stops the
  children in order, and a stop reaches the child's own children too.

``stop_all`` stops children in reverse start order: ``SIGTERM``, a grace period, ``SIGKILL``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = ["ProcessGroup", "StartupError", "free_port"]

_PR_SET_PDEATHSIG = 1
_POLL_INTERVAL = 0.02
_TAIL_LINES = 40


class StartupError(RuntimeError):
    """A child exited or did not become ready in time; the message ends with its log's tail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    """A ``preexec_fn`` asking the kernel for SIGTERM when the parent dies."""

    def arm() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            os._exit(121)
        # The parent may have died between fork and prctl: then nobody will signal us.
        if os.getppid() != parent_pid:
            os._exit(122)

    return arm


def _tail(path: Path, lines: int = _TAIL_LINES) -> str:
    try:
        with path.open("rb") as file:
            file.seek(0, os.SEEK_END)
            size = file.tell()
            file.seek(max(0, size - 16_384))
            text = file.read().decode("utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


class ProcessGroup:
    """Named child processes, started in order and stopped in reverse order."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.log_dir = directory / "logs"
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` as child ``name``; ``env`` replaces the environment when given."""
        if name in self._children and self._children[name].poll() is None:
            raise ValueError(f"{name} is already running (pid {self._children[name].pid})")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path(name).open("ab") as log:
            log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} start {list(argv)}\n".encode())
            log.flush()
            child = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
                # prctl must run in the child between fork and exec.
                preexec_fn=_die_with_parent(os.getpid()),
            )
        self._children[name] = child
        return child

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def pid(self, name: str) -> int:
        return self._children[name].pid

    def argv(self, name: str) -> list[str]:
        """What ``name`` was started with, to start it again after a stop."""
        return [str(arg) for arg in self._children[name].args]  # type: ignore[union-attr]

    def pids(self) -> dict[str, int]:
        return {name: child.pid for name, child in self._children.items()}

    def running(self, name: str) -> bool:
        child = self._children.get(name)
        return child is not None and child.poll() is None

    def wait_ready(self, name: str, check: Callable[[], bool], timeout: float = 30.0) -> float:
        """Poll ``check`` until it returns True; the seconds it took.

        ``check`` should answer quickly and return False (not raise) while the child warms up;
        an exception it raises is treated as "not yet". Raises ``StartupError`` with the tail of
        the child's log if the child exits or the timeout passes.
        """
        child = self._children[name]
        started = time.monotonic()
        deadline = started + timeout
        last_error: Exception | None = None
        while True:
            code = child.poll()
            if code is not None:
                raise StartupError(self._failure(name, f"exited with code {code}"))
            try:
                if check():
                    return time.monotonic() - started
            except Exception as e:  # any failure of the probe means "not ready yet"
                last_error = e
            if time.monotonic() >= deadline:
                detail = f"; last probe error: {last_error!r}" if last_error else ""
                raise StartupError(self._failure(name, f"not ready after {timeout:.1f}s{detail}"))
            time.sleep(_POLL_INTERVAL)

    def _failure(self, name: str, what: str) -> str:
        path = self.log_path(name)
        return f"{name} {what}\n--- tail of {path}:\n{_tail(path)}"

    def stop(self, name: str, timeout: float = 10.0) -> int | None:
        """SIGTERM, ``timeout`` seconds of grace, SIGKILL; the exit code (None: not started)."""
        child = self._children.pop(name, None)
        if child is None:
            return None
        if child.poll() is None:
            _signal_group(child.pid, signal.SIGTERM)
            try:
                return child.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(child.pid, signal.SIGKILL)
                return child.wait()
        return child.returncode

    def kill(self, name: str) -> None:
        """SIGKILL ``name`` (and its own children): a crash, nothing flushed or drained."""
        child = self._children.pop(name)
        _signal_group(child.pid, signal.SIGKILL)
        child.wait()

    def stop_all(self, timeout: float = 10.0) -> None:
        for name in reversed(list(self._children)):
            self.stop(name, timeout)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # The child leads its own session and process group (start_new_session), so its pid is
    # the group id; the group may be gone already.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
