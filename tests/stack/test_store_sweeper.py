"""A process killed inside a store transaction stalls the document it wrote for at most the
transaction lifetime, as on mongod, not forever (stack/store_sweeper.py).

The store here is the same SecantusDB, in a child of its own (no other client's transactions
reap the abandoned one by chance) with a lifetime of 3 s instead of the daemon's fixed 60 s,
as operators may lower ``transactionLifetimeLimitSeconds`` on mongod; the launcher's sweeper
runs against it. A child opens a transaction, writes a counter and is SIGKILLed; a plain
write of the same counter then waits for the abandoned transaction: past its lifetime while
nothing sweeps, and only until the sweeper's next transaction statement once one does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pymongo
import pytest

from stack.store_sweeper import StoreSweeper

pytestmark = [pytest.mark.stack, pytest.mark.timeout(120)]

_LIFETIME: Final = 3.0
_SWEEP_EVERY: Final = 1.0

_STORE = """
import sys
from secantus.server import SecantusDBServer
server = SecantusDBServer(storage_path=sys.argv[1], transaction_lifetime_seconds=float(sys.argv[2]))
server.start()
print(server.port, flush=True)
server.wait()
"""

_ABANDON = """
import sys, time, pymongo
client = pymongo.MongoClient(sys.argv[1])
session = client.start_session()
session.start_transaction()
client.sweeper_test.counters.update_one({"_id": "hot"}, {"$inc": {"n": 100}}, session=session)
print("in transaction", flush=True)
time.sleep(600)
"""


@pytest.fixture
def store_uri(tmp_path: Path) -> Iterator[str]:
    argv = [sys.executable, "-c", _STORE, str(tmp_path / "store"), str(_LIFETIME)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as store:
        assert store.stdout is not None
        port = int(store.stdout.readline())
        try:
            yield f"mongodb://127.0.0.1:{port}/?directConnection=true"
        finally:
            store.kill()


def test_a_transaction_abandoned_by_a_killed_process_ends_once_the_sweeper_runs(
    store_uri: str,
) -> None:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(store_uri)
    counters = client.sweeper_test.counters
    counters.insert_one({"_id": "hot", "n": 0})
    with subprocess.Popen(
        [sys.executable, "-c", _ABANDON, store_uri], stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "in transaction"
        os.kill(child.pid, signal.SIGKILL)

    done = threading.Event()

    def write() -> None:
        counters.update_one({"_id": "hot"}, {"$inc": {"n": 1}})
        done.set()

    threading.Thread(target=write, daemon=True).start()
    # Nothing sweeps: the abandoned transaction holds the document well past its lifetime...
    assert not done.wait(3 * _LIFETIME)
    sweeper = StoreSweeper(store_uri, every=_SWEEP_EVERY)
    sweeper.start()
    try:
        # ...and the sweeper's next round ends it.
        assert done.wait(_SWEEP_EVERY + 20), "the abandoned transaction was never ended"
    finally:
        sweeper.stop()
    # Its write was rolled back, not committed.
    assert counters.find_one({"_id": "hot"}) == {"_id": "hot", "n": 1}
    client.close()
