"""services/gateway/recent_reads.py: answers at most max_age old, refreshed in the background."""

from __future__ import annotations

import asyncio

from services.gateway.recent_reads import RecentReads


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Store:
    def __init__(self) -> None:
        self.value: str | None = "v0"
        self.reads = 0
        self.answer = asyncio.Event()
        self.answer.set()

    async def read(self, key: str) -> str | None:
        """The value as it was when the read began, answered when ``answer`` is set."""
        self.reads += 1
        value = self.value
        await self.answer.wait()
        return value


def reads_of(store: Store, clock: Clock) -> RecentReads[str, str]:
    return RecentReads(store.read, refresh_after=0.25, max_age=1.0, clock=clock)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_fresh_answer_is_given_without_a_read() -> None:
    store, clock = Store(), Clock()
    recent = reads_of(store, clock)
    assert await recent.get("tx") == "v0"
    store.value = "v1"
    clock.now = 0.2
    assert [await recent.get("tx") for _ in range(10)] == ["v0"] * 10
    assert store.reads == 1


async def test_an_ageing_answer_is_given_while_one_refresh_runs() -> None:
    store, clock = Store(), Clock()
    recent = reads_of(store, clock)
    await recent.get("tx")
    store.value = "v1"
    clock.now = 0.5
    assert [await recent.get("tx") for _ in range(10)] == ["v0"] * 10  # nobody waits
    await settle()
    assert store.reads == 2  # one refresh for the ten
    assert await recent.get("tx") == "v1"


async def test_nothing_older_than_max_age_is_answered() -> None:
    store, clock = Store(), Clock()
    recent = reads_of(store, clock)
    await recent.get("tx")
    store.value = "v1"
    clock.now = 1.0
    assert await recent.get("tx") == "v1"


async def test_a_change_made_here_shows_at_once() -> None:
    store, clock = Store(), Clock()
    recent = reads_of(store, clock)
    await recent.get("tx")
    store.value = "v1"
    recent.forget("tx")
    assert await recent.get("tx") == "v1"


async def test_a_read_begun_before_a_change_made_here_is_not_kept() -> None:
    store, clock = Store(), Clock()
    recent = reads_of(store, clock)
    store.answer.clear()
    slow = asyncio.create_task(recent.get("tx"))  # reads "v0"...
    await settle()
    clock.now = 0.1
    store.value = "v1"
    recent.forget("tx")  # ...while this process writes "v1"
    store.answer.set()
    assert await slow == "v0"
    assert await recent.get("tx") == "v1"


async def test_missing_records_are_read_every_time() -> None:
    store, clock = Store(), Clock()
    store.value = None
    recent = reads_of(store, clock)
    assert await recent.get("tx") is None
    store.value = "created"
    assert await recent.get("tx") == "created"
