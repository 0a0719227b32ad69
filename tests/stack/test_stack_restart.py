"""``Stack.restart``: nats-server and the store killed with SIGKILL and started again on the
same port and data directory keep what they had made durable (the chaos tests restart both
in the middle of campaigns); ``store_test_commands`` arms the store's failpoints."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from stack.launcher import Stack

# A given AWS endpoint: the stack starts NATS and the store only (no moto, no simulator).
_ONLY_NATS_AND_STORE = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}


async def _publish(url: str) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="KEPT", subjects=["kept.>"])
        await js.publish("kept.one", b"survives")
    finally:
        await nc.close()


async def _stored(url: str) -> bytes:
    nc = await nats.connect(url, connect_timeout=5)
    try:
        js = nc.jetstream()
        return (await js.get_msg("KEPT", 1)).data or b""
    finally:
        await nc.close()


def _fail_point(uri: str) -> None:
    client: MongoClient[dict[str, object]] = MongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        client.admin.command({"configureFailPoint": "failCommand", "mode": "off", "data": {}})
    finally:
        client.close()


def test_restarted_servers_keep_their_port_and_data(tmp_path: Path) -> None:
    stack = Stack(tmp_path, environ=_ONLY_NATS_AND_STORE, store_test_commands=True)
    with stack as info:
        client: MongoClient[dict[str, object]] = MongoClient(
            info.mongodb_uri, w="majority", journal=True
        )
        client.db.kept.insert_one({"_id": 1, "value": "survives"})
        client.close()
        asyncio.run(_publish(info.nats_url))
        before = stack.processes.pids()

        stack.restart("store", down_seconds=0.2)
        stack.restart("nats", down_seconds=0.2)

        after = stack.processes.pids()
        assert after["store"] != before["store"]
        assert after["nats"] != before["nats"]
        client = MongoClient(info.mongodb_uri, serverSelectionTimeoutMS=5000)
        assert client.db.kept.find_one({"_id": 1}) == {"_id": 1, "value": "survives"}
        client.close()
        assert asyncio.run(_stored(info.nats_url)) == b"survives"
        _fail_point(info.mongodb_uri)  # still armed after the restart


def test_the_store_refuses_failpoints_unless_asked(tmp_path: Path) -> None:
    with Stack(tmp_path, environ=_ONLY_NATS_AND_STORE) as info, pytest.raises(OperationFailure):
        _fail_point(info.mongodb_uri)
