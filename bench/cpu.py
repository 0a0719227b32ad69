"""CPU time of a process, from ``/proc/<pid>/stat``: what the benches charge per message."""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a running process, in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # After the ")" closing the command name, utime and stime are the 12th and 13th fields.
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS
