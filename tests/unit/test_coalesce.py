"""services/gateway/coalesce.py: one read in flight per key, later callers share the next."""

from __future__ import annotations

import asyncio

import pytest

from services.gateway.coalesce import Coalescer


class Store:
    """A read that waits for ``release`` and answers the data as it was when it began."""

    def __init__(self) -> None:
        self.version = 0
        self.reads: list[str] = []
        self.release = asyncio.Event()
        self.fail = False

    async def read(self, key: str) -> tuple[str, int]:
        self.reads.append(key)
        seen = self.version
        await self.release.wait()
        if self.fail:
            raise RuntimeError("store down")
        return key, seen


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_callers_arriving_during_a_read_share_the_next_one() -> None:
    store = Store()
    reads = Coalescer(store.read)
    first = asyncio.create_task(reads.get("tx"))
    await settle()
    later = [asyncio.create_task(reads.get("tx")) for _ in range(20)]
    await settle()
    assert store.reads == ["tx"]  # the others wait for the read in flight to end
    store.release.set()
    answers = await asyncio.gather(first, *later)
    assert store.reads == ["tx", "tx"]
    assert len(set(answers)) == 1


async def test_a_write_acknowledged_before_a_caller_arrived_is_in_its_answer() -> None:
    store = Store()
    reads = Coalescer(store.read)
    first = asyncio.create_task(reads.get("tx"))
    await settle()
    store.version = 1  # acknowledged while the first read is in flight
    second = asyncio.create_task(reads.get("tx"))
    await settle()
    store.release.set()
    assert await first == ("tx", 0)
    assert await second == ("tx", 1)  # not the first read's older answer


async def test_keys_are_read_apart() -> None:
    store = Store()
    reads = Coalescer(store.read)
    store.release.set()
    assert await asyncio.gather(reads.get("a"), reads.get("b")) == [("a", 0), ("b", 0)]
    assert sorted(store.reads) == ["a", "b"]


async def test_a_caller_giving_up_leaves_the_read_to_the_others() -> None:
    store = Store()
    reads = Coalescer(store.read)
    first = asyncio.create_task(reads.get("tx"))
    await settle()
    gone, staying = asyncio.create_task(reads.get("tx")), asyncio.create_task(reads.get("tx"))
    await settle()
    first.cancel()  # the running read's only caller
    gone.cancel()  # one of the next read's two
    await settle()
    store.release.set()
    assert await staying == ("tx", 0)
    assert store.reads == ["tx", "tx"]


async def test_a_failed_read_fails_its_callers_only() -> None:
    store = Store()
    reads = Coalescer(store.read)
    store.fail = True
    store.release.set()
    with pytest.raises(RuntimeError, match="store down"):
        await reads.get("tx")
    store.fail = False
    assert await reads.get("tx") == ("tx", 0)
    assert store.reads == ["tx", "tx"]
