"""A process killed inside a store transaction stalls the document it wrote for at most the
transaction lifetime (60 s), as on mongod, not forever (stack/store_sweeper.py).

The store of its own (no other client's transactions to reap the abandoned one by chance): a
child opens a transaction, writes a counter and is SIGKILLed; a plain write of the same
counter then waits for the abandoned transaction and goes through once the sweeper's next
transaction statement makes the store reap it. Without the sweeper it waits forever.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest

from stack.launcher import Stack, StackInfo

pytestmark = [pytest.mark.stack, pytest.mark.timeout(180)]

# The store's transaction lifetime (60 s), the sweeper's round and a margin.
_WITHIN = 60 + 5 + 45

_ABANDON = """
import sys, time, pymongo
client = pymongo.MongoClient(sys.argv[1])
session = client.start_session()
session.start_transaction()
client.sweeper_test.counters.update_one({"_id": "hot"}, {"$inc": {"n": 100}}, session=session)
print("in transaction", flush=True)
time.sleep(600)
"""


@pytest.fixture(scope="module")
def info(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackInfo]:
    # Only the store: naming the other servers as given makes the launcher skip them.
    unused = {"NATS_URL": "nats://127.0.0.1:9", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    with Stack(tmp_path_factory.mktemp("stack"), environ=unused) as started:
        assert set(started.pids) == {"store"}
        yield started


def test_a_transaction_abandoned_by_a_killed_process_ends_within_its_lifetime(
    info: StackInfo, tmp_path: Path
) -> None:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(info.mongodb_uri)
    counters = client.sweeper_test.counters
    counters.insert_one({"_id": "hot", "n": 0})
    with subprocess.Popen(
        [sys.executable, "-c", _ABANDON, info.mongodb_uri], stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "in transaction"
        os.kill(child.pid, signal.SIGKILL)

    done = threading.Event()

    def write() -> None:
        counters.update_one({"_id": "hot"}, {"$inc": {"n": 1}})
        done.set()

    threading.Thread(target=write, daemon=True).start()
    # The abandoned transaction holds the document: the write waits for it...
    assert not done.wait(3)
    # ...and goes through once the transaction has outlived its lifetime.
    assert done.wait(_WITHIN), "the abandoned transaction was never ended"
    # Its write was rolled back, not committed.
    assert counters.find_one({"_id": "hot"}) == {"_id": "hot", "n": 1}
    client.close()
