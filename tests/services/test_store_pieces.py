"""Long lists of messages reach the store as ranges of rows, or where the rows are
scattered as ``$in`` lists of at most ``MAX_IN`` ids (shared/message_ranges.py and
shared/store.py say why), on the real store, seen by a command listener: the moves and
reads are whole and touch no other message."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring

from shared.message_ranges import find_messages
from shared.status import MessageStatus as M
from shared.store import MAX_IN, CommandCounter, Store
from shared.transitions import move_messages
from stack.launcher import StackInfo
from tests.conftest import drop_database

N = 2 * MAX_IN + 100


class _Recorder(monitoring.CommandListener):
    def __init__(self) -> None:
        self.commands: list[tuple[str, dict[str, Any]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.commands.append((event.command_name, dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def writes(self) -> list[tuple[str, ...]]:
        """Each store transaction's writes, by collection, up to its commit."""
        done: list[tuple[str, ...]] = []
        current: list[str] = []
        for name, command in self.commands:
            if name == "update":
                current.append(str(command["update"]))
            elif name == "commitTransaction":
                done.append((*current, "commit"))
                current = []
        return done

    def _queries(self, name: str) -> list[dict[str, Any]]:
        return [
            command["updates"][0]["q"] if name == "update" else command["filter"]
            for command_name, command in self.commands
            if command_name == name and command.get(name) == "messages"
        ]

    def row_ranges(self, name: str) -> list[dict[str, Any]]:
        """The range of rows of each ``name`` command on the messages."""
        return [query["row"] for query in self._queries(name)]

    def in_lists(self, name: str, key: str) -> list[int]:
        """The length of each ``$in`` on ``_id`` the ``name`` commands sent."""
        return [len(query[key]["$in"]) for query in self._queries(name)]


@pytest.fixture
async def store(stack_info: StackInfo, db_name: str) -> AsyncIterator[tuple[Store, _Recorder]]:
    recorder = _Recorder()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        stack_info.mongodb_uri, tz_aware=True, event_listeners=[recorder]
    )
    try:
        yield Store(client, db_name, CommandCounter()), recorder
    finally:
        await drop_database(client, db_name)
        await client.close()


def _messages(rows: range) -> list[dict[str, Any]]:
    return [
        {"_id": f"tx:{row}", "transaction_id": "tx", "row": row, "status": M.READY_TO_SEND}
        for row in rows
    ]


async def test_a_long_move_and_read_of_scattered_rows_go_in_pieces_and_miss_nothing(
    store: tuple[Store, _Recorder],
) -> None:
    db, recorder = store
    # Every other row: a range per row would be more commands than pieces.
    documents = _messages(range(0, 2 * N, 2))
    ids = [str(doc["_id"]) for doc in documents]
    await db.transactions.insert_one({"_id": "tx", "counters": {"ready_to_send": N}})
    await db.messages.insert_many([*documents, *_messages(range(1, 2 * N, 2))])
    recorder.commands.clear()

    assert await move_messages(db, "tx", ids, M.READY_TO_SEND, M.SENDING) == N

    assert recorder.in_lists("update", "_id") == [MAX_IN, MAX_IN, 100]
    # One store transaction, the counters written first (shared/transitions.py).
    assert recorder.writes() == [("transactions", "messages", "messages", "messages", "commit")]
    tx = await db.transactions.find_one({"_id": "tx"})
    assert tx is not None
    assert tx["counters"] == {"ready_to_send": 0, "sending": N}
    found = [doc["_id"] async for doc in find_messages(db.messages, ids, {"status": M.SENDING})]
    assert sorted(found) == sorted(ids)
    assert recorder.in_lists("find", "_id") == [MAX_IN, MAX_IN, 100]
    assert await db.messages.count_documents({"status": M.SENDING}) == N


async def test_a_long_move_and_read_of_consecutive_rows_go_as_one_range_each(
    store: tuple[Store, _Recorder],
) -> None:
    db, recorder = store
    # Rows 10-609 of 0-699, and rows 650-659 as a second run: two ranges, nothing else.
    asked = [*range(10, 10 + N), *range(650, 660)]
    ids = [f"tx:{row}" for row in asked]
    await db.transactions.insert_one({"_id": "tx", "counters": {"ready_to_send": 700}})
    await db.messages.insert_many(_messages(range(700)))
    recorder.commands.clear()

    assert await move_messages(db, "tx", ids, M.READY_TO_SEND, M.SENDING) == len(ids)

    ranges = [{"$gte": 10, "$lte": 9 + N}, {"$gte": 650, "$lte": 659}]
    assert recorder.row_ranges("update") == ranges
    assert recorder.writes() == [("transactions", "messages", "messages", "commit")]
    found = [doc["_id"] async for doc in find_messages(db.messages, ids, {"status": M.SENDING})]
    assert sorted(found) == sorted(ids)
    assert recorder.row_ranges("find") == ranges
    sending = db.messages.find({"status": M.SENDING}, {"row": 1})
    assert sorted([doc["row"] async for doc in sending]) == asked


async def test_a_move_that_meets_another_movers_transaction_waits_rather_than_spins(
    store: tuple[Store, _Recorder],
) -> None:
    # Another mover's store transaction holds the counters for 0.4 s. The move runs again
    # after 0, 20, 50, 100 and 200 ms of its own (and pymongo's few ms each time): at most
    # five tries fail. pymongo's backoff alone (5 ms, growing by half, jittered) tried
    # about a dozen times.
    db, recorder = store
    ids = [f"tx:{row}" for row in range(10)]
    await db.transactions.insert_one({"_id": "tx", "counters": {"ready_to_send": 10}})
    await db.messages.insert_many(_messages(range(10)))
    async with db.client.start_session() as other:
        await other.start_transaction()
        await db.transactions.update_one({"_id": "tx"}, {"$set": {"held": True}}, session=other)
        recorder.commands.clear()
        move = asyncio.create_task(move_messages(db, "tx", ids, M.READY_TO_SEND, M.SENDING))
        await asyncio.sleep(0.4)
        await other.commit_transaction()
        assert await move == 10

    aborts = sum(1 for name, _ in recorder.commands if name == "abortTransaction")
    assert 1 <= aborts <= 5
