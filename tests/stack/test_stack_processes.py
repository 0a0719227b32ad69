"""ProcessGroup: logs, readiness errors, stop escalation, and no child outliving its parent."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from stack.processes import ProcessGroup, StartupError, free_port


def _printed(group: ProcessGroup, name: str, line: str) -> bool:
    # The log starts with the argv line, which mentions the text too: match whole lines.
    return line in group.log_path(name).read_text().splitlines()


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 1024 < port < 65536


def test_wait_ready_reports_the_exit_and_the_log_tail(tmp_path: Path) -> None:
    group = ProcessGroup(tmp_path)
    group.start("oops", [sys.executable, "-c", "print('boom: bad config'); raise SystemExit(3)"])
    with pytest.raises(StartupError, match=r"(?s)oops exited with code 3.*boom: bad config"):
        group.wait_ready("oops", lambda: False, timeout=5)
    group.stop_all()


def test_wait_ready_times_out_with_the_log_tail(tmp_path: Path) -> None:
    group = ProcessGroup(tmp_path)
    script = "import time; print('warming up', flush=True); time.sleep(30)"
    group.start("slow", [sys.executable, "-c", script])
    try:
        with pytest.raises(StartupError, match=r"(?s)slow not ready after 0.3s.*warming up"):
            group.wait_ready("slow", lambda: False, timeout=0.3)
    finally:
        group.stop_all()
    assert (tmp_path / "logs" / "slow.log").exists()


def test_stop_kills_a_child_that_ignores_sigterm(
    tmp_path: Path, gone: Callable[[int], bool]
) -> None:
    group = ProcessGroup(tmp_path)
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(30)"
    )
    group.start("stubborn", [sys.executable, "-c", script])
    group.wait_ready("stubborn", lambda: _printed(group, "stubborn", "ready"), timeout=5)
    pid = group.pid("stubborn")
    started = time.monotonic()
    code = group.stop("stubborn", timeout=0.5)
    assert code == -signal.SIGKILL
    assert time.monotonic() - started < 3
    assert gone(pid)


def test_stop_all_goes_in_reverse_start_order(tmp_path: Path) -> None:
    group = ProcessGroup(tmp_path)
    order = tmp_path / "order"
    script = (
        "import signal, sys, time\n"
        "def bye(*_):\n"
        "    open(sys.argv[1], 'a').write(sys.argv[2] + '\\n'); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    for name in ("first", "second", "third"):
        group.start(name, [sys.executable, "-c", script, str(order), name])
        group.wait_ready(name, functools.partial(_printed, group, name, "ready"), timeout=5)
    group.stop_all()
    assert order.read_text().split() == ["third", "second", "first"]


def test_children_die_with_a_parent_killed_by_sigkill(
    tmp_path: Path, gone: Callable[[int], bool]
) -> None:
    parent_script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from stack.processes import ProcessGroup\n"
        "group = ProcessGroup(Path(sys.argv[1]))\n"
        "child = group.start('sleeper', [sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_script, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    os.kill(child_pid, 0)  # alive while the parent lives
    parent.kill()
    parent.wait()
    parent.stdout.close()
    assert gone(child_pid), "the child outlived its kill -9'd parent"
