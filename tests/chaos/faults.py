"""The faults a chaos trial injects, one function each: it breaks something, waits while it
is broken when the fault has a duration, and mends it before it returns (the SES windows
close by themselves). Each returns what it did, for the trial's record.

Run them from the thread that started the stack and the platform: their children die with
it (stack/processes.py).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Final, Protocol

import httpx
from pymongo import MongoClient

from stack.launcher import Stack
from stack.platform import SERVICES, Platform
from tests.chaos.receiver import CallbackReceiver

__all__ = ["FAULTS", "Rig"]

# Every data command the services send; configureFailPoint itself stays quick.
_SLOWED: Final = ["insert", "update", "delete", "find", "getMore", "aggregate", "findAndModify"]


class Rig(Protocol):
    stack: Stack
    platform: Platform
    receiver: CallbackReceiver
    sim_url: str
    mongodb_uri: str


def kill_service(rig: Rig, rnd: random.Random) -> str:
    """kill -9 of one service at a random moment, started again after a short while."""
    name = rnd.choice(SERVICES)
    rig.platform.kill(name)
    time.sleep(rnd.uniform(0.0, 1.0))
    rig.platform.restart(name)
    return f"kill -9 {name}"


def restart_nats(rig: Rig, rnd: random.Random) -> str:
    down = rnd.uniform(0.0, 2.0)
    rig.stack.restart("nats", down_seconds=down)
    return f"nats down {down:.1f}s"


def restart_store(rig: Rig, rnd: random.Random) -> str:
    down = rnd.uniform(0.0, 2.0)
    rig.stack.restart("store", down_seconds=down)
    return f"store down {down:.1f}s"


def _ses_window(rig: Rig, body: dict[str, object], seconds: float) -> None:
    """A window of SES errors, waited out: windows opened back to back would throttle the
    whole campaign, past any retry budget (send_retry_attempts: ~80 s of backoff)."""
    body = {**body, "seconds": seconds}
    httpx.post(f"{rig.sim_url}/_sim/faults", json=body, timeout=10).raise_for_status()
    time.sleep(seconds)


def ses_throttle(rig: Rig, rnd: random.Random) -> str:
    seconds = rnd.uniform(2.0, 8.0)
    _ses_window(rig, {"kind": "throttle"}, seconds)
    return f"SES throttling {seconds:.1f}s"


def ses_5xx(rig: Rig, rnd: random.Random) -> str:
    seconds, status = rnd.uniform(2.0, 8.0), rnd.choice([500, 503])
    _ses_window(rig, {"kind": "error5xx", "status": status}, seconds)
    return f"SES {status} {seconds:.1f}s"


def callbacks_down(rig: Rig, rnd: random.Random) -> str:
    seconds = rnd.uniform(3.0, 10.0)
    rig.receiver.stop()
    time.sleep(seconds)
    rig.receiver.start()
    return f"callback receiver down {seconds:.1f}s"


def _fail_point(uri: str, mode: object, data: dict[str, object]) -> None:
    client: MongoClient[dict[str, object]] = MongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        client.admin.command({"configureFailPoint": "failCommand", "mode": mode, "data": data})
    finally:
        client.close()


def slow_store(rig: Rig, rnd: random.Random) -> str:
    """Every data command held ``block`` ms (the store's failCommand failpoint) a while."""
    seconds, block = rnd.uniform(3.0, 8.0), rnd.randint(50, 400)
    _fail_point(
        rig.mongodb_uri,
        "alwaysOn",
        {"failCommands": _SLOWED, "blockConnection": True, "blockTimeMS": block},
    )
    time.sleep(seconds)
    _fail_point(rig.mongodb_uri, "off", {})
    return f"slow store {block}ms x {seconds:.1f}s"


FAULTS: Final[dict[str, Callable[[Rig, random.Random], str]]] = {
    "kill": kill_service,
    "nats": restart_nats,
    "store": restart_store,
    "ses-throttle": ses_throttle,
    "ses-5xx": ses_5xx,
    "callbacks-down": callbacks_down,
    "slow-store": slow_store,
}
