"""Ends the embedded store's abandoned transactions on time.

A process killed inside a store transaction leaves it open, holding its writes: on the
transaction's counters document, every sender and the tracker then wait. mongod ends such a
transaction after ``transactionLifetimeLimitSeconds`` (60 s) with a background sweeper. The
embedded store (SecantusDB) has the same limit but no sweeper: it reaps expired transactions
only when some transaction statement arrives. When every writer is waiting on a plain write
that the abandoned transaction blocks, none arrives, and the stall never ends (the scale-out
run, tests/integration/test_scale_out.py, stalled so in 2 of 3 runs).

So while the stack runs, a thread runs an empty transaction every few seconds: the store
then behaves as mongod does, a crash costs at most the lifetime limit, and the services need
nothing the real database does not.
"""

from __future__ import annotations

import threading
from typing import Any, Final

import pymongo
from pymongo.errors import PyMongoError

__all__ = ["StoreSweeper"]

# Well under the 60 s lifetime, so a stall ends within a few seconds of it.
_EVERY_SECONDS: Final = 5.0


class StoreSweeper:
    def __init__(self, uri: str, every: float = _EVERY_SECONDS) -> None:
        self._client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            uri, serverSelectionTimeoutMS=2000, appname="stack-store-sweeper"
        )
        self._every = every
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="store-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._every + 5)
        self._client.close()

    def sweep(self) -> None:
        """One transaction statement: the store reaps expired transactions as it resolves it."""
        with self._client.start_session() as session, session.start_transaction():
            self._client["admin_stack"]["sweeps"].find_one({}, session=session)

    def _run(self) -> None:
        while not self._stopped.wait(self._every):
            try:
                self.sweep()
            except PyMongoError:
                # The store restarting or gone: the next round tries again.
                continue
