"""The actor runner against the real NATS and store: each test gets its own work-queue
stream and durable consumer, publishes, runs a tiny actor and looks at what is left in
the stream, the consumer, the dead letters and the DLQ stream."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import msgspec
import pytest
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from shared.actor import Actor, ActorRunner
from shared.documents import DeadLetter, from_document
from shared.errors import PermanentError, RetryableError
from shared.service import Runtime
from shared.topology import ConsumerSpec, Subjects

# Generous enough for a broken runner to fail instead of hanging, far below the per-test
# timeout.
RUN_LIMIT = 10.0
FETCH_TIMEOUT = 0.2


class Ping(msgspec.Struct, frozen=True, kw_only=True):
    n: int
    transaction_id: str = "tx-actor-test"


Step = Callable[[Ping, int], Awaitable[None]]


class Recorder(Actor[Ping]):
    """Records every call; ``step(event, attempt)`` decides how each one ends."""

    event_type = Ping

    def __init__(self, spec: ConsumerSpec, step: Step | None = None) -> None:
        self.spec = spec
        self.seen: list[Ping] = []
        self.at: list[float] = []
        self.finished: list[Ping] = []
        self._step = step

    async def handle(self, event: Ping) -> None:
        self.seen.append(event)
        self.at.append(time.monotonic())
        if self._step is not None:
            await self._step(event, self.seen.count(event))
        self.finished.append(event)


class Queue:
    """One test's own work-queue stream, subject and durable consumer."""

    def __init__(self, runtime: Runtime, spec: ConsumerSpec) -> None:
        self.runtime = runtime
        self.spec = spec
        self.js = runtime.broker.js

    @property
    def subject(self) -> str:
        return self.spec.filter_subject

    async def publish(self, *events: Ping) -> list[int]:
        acks = [
            await self.runtime.broker.publish(self.subject, e, msg_id=uuid.uuid4().hex)
            for e in events
        ]
        return [ack.seq for ack in acks]

    async def publish_raw(self, data: bytes) -> int:
        return (await self.js.publish(self.subject, data)).seq

    async def stored(self) -> int:
        return (await self.js.stream_info(self.spec.stream)).state.messages

    async def ack_pending(self) -> int:
        info = await self.js.consumer_info(self.spec.stream, self.spec.durable)
        return int(info.num_ack_pending)

    async def settled(self) -> None:
        """Wait until the server has applied every ack: ``ack`` and ``term`` are
        fire-and-forget publishes, so they land a moment after the handler returns."""
        async with asyncio.timeout(2):
            while True:
                if not await self.ack_pending():
                    return
                await asyncio.sleep(0.02)

    async def dead_letters(self) -> list[DeadLetter]:
        raw = await self.runtime.store.dead_letters.find({}).sort("stream_seq").to_list()
        return [from_document(doc, DeadLetter) for doc in raw]

    async def dlq_copy(self) -> bytes:
        """The last message on this service's DLQ subject (a core publish: poll for it)."""
        async with asyncio.timeout(3):
            while True:
                try:
                    msg = await self.js.get_last_msg("DLQ", Subjects.dlq(self.spec.service))
                except NotFoundError:
                    await asyncio.sleep(0.02)
                else:
                    return msg.data or b""

    def runner(self, actor: Actor[Ping], *, concurrency: int = 4) -> ActorRunner[Ping]:
        return ActorRunner(
            actor,
            self.runtime.broker,
            self.runtime.store,
            concurrency=concurrency,
            fetch_timeout=FETCH_TIMEOUT,
        )


MakeQueue = Callable[..., Awaitable[Queue]]


@pytest.fixture
async def make_queue(runtime: Runtime) -> AsyncIterator[MakeQueue]:
    js = runtime.broker.js
    created: list[str] = []

    async def make(
        *,
        ack_wait: float = 2.0,
        backoff: tuple[float, ...] = (0.1, 0.2),
        max_deliver: int = 3,
    ) -> Queue:
        tag = uuid.uuid4().hex[:12]
        spec = ConsumerSpec(
            stream=f"TEST_{tag}",
            durable=f"test-{tag}",
            filter_subject=f"test.{tag}",
            service=f"test-{tag}",
            ack_wait=ack_wait,
            max_deliver=max_deliver,
            backoff=backoff,
        )
        await js.add_stream(
            StreamConfig(
                name=spec.stream,
                subjects=[spec.filter_subject],
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.MEMORY,
            )
        )
        created.append(spec.stream)
        await js.add_consumer(spec.stream, spec.config())
        return Queue(runtime, spec)

    yield make
    for name in created:
        await js.delete_stream(name)


async def run_until(
    runner: ActorRunner[Ping], done: Callable[[], Awaitable[bool]], *, limit: float = RUN_LIMIT
) -> None:
    """Run until ``done()`` holds, then stop and wait for ``run`` to return."""
    task = asyncio.create_task(runner.run())
    try:
        async with asyncio.timeout(limit):
            while not await done():
                if task.done():
                    task.result()  # a runner that died says why
                    pytest.fail("run() returned before it was stopped")
                await asyncio.sleep(0.02)
    finally:
        runner.stop()
        async with asyncio.timeout(5):
            await task


# -- settling ------------------------------------------------------------------------------


async def test_success_is_acked(make_queue: MakeQueue) -> None:
    queue = await make_queue()
    await queue.publish(Ping(n=1, transaction_id="tx-1"))
    actor = Recorder(queue.spec)
    async with asyncio.timeout(RUN_LIMIT):
        await queue.runner(actor).run(until_idle=True)
    assert actor.seen == [Ping(n=1, transaction_id="tx-1")]
    await queue.settled()
    assert await queue.stored() == 0
    assert await queue.ack_pending() == 0
    assert await queue.dead_letters() == []


async def test_a_retryable_error_is_redelivered_after_the_backoff(make_queue: MakeQueue) -> None:
    queue = await make_queue(backoff=(0.4, 0.8))

    async def fail_once(event: Ping, attempt: int) -> None:
        if attempt == 1:
            raise RetryableError("store unavailable")

    actor = Recorder(queue.spec, fail_once)
    await queue.publish(Ping(n=1))
    runner = queue.runner(actor)

    async def handled_twice() -> bool:
        return len(actor.finished) == 1 and await queue.stored() == 0

    await run_until(runner, handled_twice)
    assert actor.seen == [Ping(n=1), Ping(n=1)]
    assert actor.at[1] - actor.at[0] >= 0.4 - 0.05  # the nak carried the first backoff
    assert await queue.ack_pending() == 0
    assert await queue.dead_letters() == []


async def test_an_unexpected_exception_is_retried_like_a_retryable_one(
    make_queue: MakeQueue,
) -> None:
    queue = await make_queue(backoff=(0.3,))

    async def bug_once(event: Ping, attempt: int) -> None:
        if attempt == 1:
            raise ValueError("a passing fault")

    actor = Recorder(queue.spec, bug_once)
    await queue.publish(Ping(n=7))

    async def handled() -> bool:
        return len(actor.finished) == 1 and await queue.stored() == 0

    await run_until(queue.runner(actor), handled)
    assert actor.seen == [Ping(n=7), Ping(n=7)]
    assert actor.at[1] - actor.at[0] >= 0.3 - 0.05
    assert await queue.dead_letters() == []


@pytest.mark.parametrize(
    "error", [RetryableError("upstream down"), ValueError("a bug")], ids=["retryable", "bug"]
)
async def test_exhausted_retries_become_a_dead_letter(
    make_queue: MakeQueue, error: Exception
) -> None:
    queue = await make_queue(backoff=(0.1, 0.2), max_deliver=3)

    async def always_fail(event: Ping, attempt: int) -> None:
        raise error

    actor = Recorder(queue.spec, always_fail)
    [seq] = await queue.publish(Ping(n=3))

    async def dead() -> bool:
        return len(await queue.dead_letters()) == 1 and await queue.stored() == 0

    await run_until(queue.runner(actor), dead)
    assert actor.seen == [Ping(n=3)] * 3  # max_deliver deliveries, not one more
    # The nak delays follow the backoff by delivery number.
    assert actor.at[1] - actor.at[0] >= 0.1 - 0.05
    assert actor.at[2] - actor.at[1] >= 0.2 - 0.05
    [letter] = await queue.dead_letters()
    assert letter.id == f"{queue.spec.stream}:{seq}"
    assert letter.service == queue.spec.service
    assert letter.subject == queue.subject
    assert letter.stream_seq == seq
    assert letter.deliveries == 3
    assert msgspec.json.decode(letter.payload, type=Ping) == Ping(n=3)
    assert "after 3 deliveries" in letter.error
    assert repr(error) in letter.error
    assert msgspec.json.decode(await queue.dlq_copy(), type=Ping) == Ping(n=3)
    assert await queue.ack_pending() == 0
    # Nothing is redelivered afterwards.
    await asyncio.sleep(0.3)
    assert len(actor.seen) == 3


async def test_a_permanent_error_is_dead_lettered_at_once(make_queue: MakeQueue) -> None:
    queue = await make_queue(max_deliver=5)

    async def reject(event: Ping, attempt: int) -> None:
        if event.n == 4:
            raise PermanentError("template does not render")

    actor = Recorder(queue.spec, reject)
    await queue.publish(Ping(n=0))  # a message that succeeds, so the seq below is not 1
    [seq] = await queue.publish(Ping(n=4))

    async def dead() -> bool:
        return len(await queue.dead_letters()) == 1 and await queue.stored() == 0

    await run_until(queue.runner(actor), dead)
    [letter] = await queue.dead_letters()
    assert Ping(n=0) in actor.finished
    assert actor.seen.count(Ping(n=4)) == 1
    assert letter.stream_seq == seq
    assert letter.deliveries == 1
    assert "template does not render" in letter.error
    assert "PermanentError" in letter.error
    assert msgspec.json.decode(letter.payload, type=Ping) == Ping(n=4)
    assert msgspec.json.decode(await queue.dlq_copy(), type=Ping) == Ping(n=4)
    await asyncio.sleep(0.3)
    assert actor.seen.count(Ping(n=4)) == 1


@pytest.mark.parametrize(
    "payload", [b"not json at all", b'{"n": "three"}', b"\xff\xfe"], ids=["text", "schema", "bytes"]
)
async def test_an_undecodable_payload_is_dead_lettered_unhandled(
    make_queue: MakeQueue, payload: bytes
) -> None:
    queue = await make_queue()
    seq = await queue.publish_raw(payload)
    actor = Recorder(queue.spec)

    async def dead() -> bool:
        return len(await queue.dead_letters()) == 1 and await queue.stored() == 0

    await run_until(queue.runner(actor), dead)
    assert actor.seen == []
    [letter] = await queue.dead_letters()
    assert letter.stream_seq == seq
    assert letter.deliveries == 1
    assert letter.error.startswith("undecodable payload")
    assert letter.payload == payload.decode("utf-8", errors="replace")
    assert await queue.dlq_copy() == payload
    assert await queue.ack_pending() == 0


# -- long work and concurrency --------------------------------------------------------------


async def test_long_work_is_kept_alive_and_not_redelivered(make_queue: MakeQueue) -> None:
    queue = await make_queue(ack_wait=1.0)

    async def slow(event: Ping, attempt: int) -> None:
        await asyncio.sleep(2.5)

    actor = Recorder(queue.spec, slow)
    await queue.publish(Ping(n=1))

    async def acked() -> bool:
        return len(actor.finished) == 1 and await queue.stored() == 0

    await run_until(queue.runner(actor), acked)
    assert actor.seen == [Ping(n=1)]
    info = await queue.js.consumer_info(queue.spec.stream, queue.spec.durable)
    assert info.num_redelivered == 0
    assert info.num_ack_pending == 0


async def test_concurrency_is_bounded(make_queue: MakeQueue) -> None:
    queue = await make_queue()
    running = 0
    most = 0

    async def tracked(event: Ping, attempt: int) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            await asyncio.sleep(0.2)
        finally:
            running -= 1

    actor = Recorder(queue.spec, tracked)
    await queue.publish(*(Ping(n=i) for i in range(10)))
    async with asyncio.timeout(RUN_LIMIT):
        await queue.runner(actor, concurrency=3).run(until_idle=True)
    assert sorted(e.n for e in actor.finished) == list(range(10))
    assert most == 3
    await queue.settled()
    assert await queue.stored() == 0


# -- stopping -------------------------------------------------------------------------------


async def test_stop_waits_for_the_messages_in_hand(make_queue: MakeQueue) -> None:
    queue = await make_queue()
    started = asyncio.Event()

    async def slow(event: Ping, attempt: int) -> None:
        if len(actor.seen) == 3:
            started.set()
        await asyncio.sleep(0.6)

    actor = Recorder(queue.spec, slow)
    runner = queue.runner(actor, concurrency=3)
    task = asyncio.create_task(runner.run())
    try:
        await queue.publish(*(Ping(n=i) for i in range(3)))
        async with asyncio.timeout(5):
            await started.wait()
        runner.stop()
        await asyncio.sleep(0.1)
        assert not task.done(), "run() returned with handlers still running"
        async with asyncio.timeout(5):
            await task
    finally:
        runner.stop()
        if not task.done():
            task.cancel()
    assert sorted(e.n for e in actor.finished) == [0, 1, 2]
    await queue.settled()
    assert await queue.stored() == 0
    assert await queue.ack_pending() == 0


async def test_stop_fetches_nothing_more(make_queue: MakeQueue) -> None:
    """Stopped with every slot busy, the runner finishes those and leaves the rest."""
    queue = await make_queue(ack_wait=5.0)
    both_started = asyncio.Event()

    async def slow(event: Ping, attempt: int) -> None:
        if len(actor.seen) == 2:
            both_started.set()
        await asyncio.sleep(0.5)

    actor = Recorder(queue.spec, slow)
    runner = queue.runner(actor, concurrency=2)
    await queue.publish(*(Ping(n=i) for i in range(4)))
    task = asyncio.create_task(runner.run())
    try:
        async with asyncio.timeout(5):
            await both_started.wait()
        runner.stop()
        async with asyncio.timeout(5):
            await task
    finally:
        runner.stop()
        if not task.done():
            task.cancel()
    assert len(actor.finished) == 2, f"handled after stop: {actor.seen[2:]}"
    await queue.settled()
    assert await queue.stored() == 2
    assert await queue.ack_pending() == 0


async def test_stop_before_run_returns_at_once(make_queue: MakeQueue) -> None:
    queue = await make_queue()
    await queue.publish(Ping(n=1))
    actor = Recorder(queue.spec)
    runner = queue.runner(actor)
    runner.stop()
    async with asyncio.timeout(2):
        await runner.run()
    assert actor.seen == []
    assert await queue.stored() == 1


async def test_handlings_cut_off_are_handed_back_at_once(make_queue: MakeQueue) -> None:
    """A run cancelled mid-handling (a stop's grace period over, shared/service.py) naks
    what it held: the next runner gets it now, not after ack_wait."""
    queue = await make_queue(ack_wait=30.0)
    both_started = asyncio.Event()

    async def stuck(event: Ping, attempt: int) -> None:
        if len(actor.seen) == 2:
            both_started.set()
        await asyncio.Event().wait()  # a store that never answers

    actor = Recorder(queue.spec, stuck)
    task = asyncio.create_task(queue.runner(actor, concurrency=2).run())
    await queue.publish(Ping(n=1), Ping(n=2))
    try:
        async with asyncio.timeout(5):
            await both_started.wait()
    finally:
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert actor.finished == []

    again = Recorder(queue.spec)
    async with asyncio.timeout(RUN_LIMIT):
        await queue.runner(again).run(until_idle=True)
    assert sorted(e.n for e in again.seen) == [1, 2]
    assert again.at[-1] - actor.at[-1] < 5.0  # far from the 30 s of ack_wait


# -- until idle -----------------------------------------------------------------------------


async def test_until_idle_returns_once_drained(make_queue: MakeQueue) -> None:
    queue = await make_queue()
    await queue.publish(*(Ping(n=i) for i in range(5)))
    actor = Recorder(queue.spec)
    began = time.monotonic()
    async with asyncio.timeout(RUN_LIMIT):
        await queue.runner(actor, concurrency=2).run(until_idle=True)
    assert time.monotonic() - began < 3
    assert sorted(e.n for e in actor.seen) == list(range(5))
    await queue.settled()
    assert await queue.stored() == 0
    assert await queue.ack_pending() == 0


async def test_until_idle_on_an_empty_stream_returns(make_queue: MakeQueue) -> None:
    queue = await make_queue()
    actor = Recorder(queue.spec)
    async with asyncio.timeout(3):
        await queue.runner(actor).run(until_idle=True)
    assert actor.seen == []


async def test_until_idle_waits_for_a_pending_redelivery(make_queue: MakeQueue) -> None:
    """A message nak'ed with a backoff longer than one fetch is still work left."""
    queue = await make_queue(backoff=(1.0,))

    async def fail_once(event: Ping, attempt: int) -> None:
        if attempt == 1:
            raise RetryableError("try later")

    actor = Recorder(queue.spec, fail_once)
    await queue.publish(Ping(n=1))
    async with asyncio.timeout(RUN_LIMIT):
        await queue.runner(actor).run(until_idle=True)
    assert actor.seen == [Ping(n=1), Ping(n=1)]
    assert await queue.stored() == 0


# -- joined deliveries ------------------------------------------------------------------------


class Pings(msgspec.Struct, frozen=True, kw_only=True):
    ns: list[int]


class Joiner(Actor[Pings]):
    """Joins up to ``merge_limit`` deliveries; fails every event that holds ``poison``."""

    event_type = Pings
    merge_limit = 10

    def __init__(self, spec: ConsumerSpec, poison: int | None = None) -> None:
        self.spec = spec
        self.poison = poison
        self.handled: list[list[int]] = []

    def merge(self, events: Sequence[Pings]) -> Pings:
        return Pings(ns=[n for event in events for n in event.ns])

    async def handle(self, event: Pings) -> None:
        if self.poison in event.ns:
            raise PermanentError(f"{self.poison} is poison")
        self.handled.append(event.ns)


async def publish_pings(queue: Queue, ns: range) -> list[int]:
    acks = [
        await queue.runtime.broker.publish(queue.subject, Pings(ns=[n]), msg_id=uuid.uuid4().hex)
        for n in ns
    ]
    return [ack.seq for ack in acks]


def joiner_runner(queue: Queue, actor: Joiner) -> ActorRunner[Pings]:
    return ActorRunner(
        actor, queue.runtime.broker, queue.runtime.store, concurrency=4, fetch_timeout=0.2
    )


async def test_waiting_deliveries_are_joined_up_to_the_merge_limit(
    make_queue: MakeQueue,
) -> None:
    queue = await make_queue()
    await publish_pings(queue, range(25))
    actor = Joiner(queue.spec)
    async with asyncio.timeout(RUN_LIMIT):
        await joiner_runner(queue, actor).run(until_idle=True)
    assert sorted(n for ns in actor.handled for n in ns) == list(range(25))
    assert max(len(ns) for ns in actor.handled) > 1
    assert all(len(ns) <= Joiner.merge_limit for ns in actor.handled)
    await queue.settled()
    assert await queue.stored() == 0
    assert await queue.dead_letters() == []


async def test_a_failing_joined_event_is_handled_one_delivery_at_a_time(
    make_queue: MakeQueue,
) -> None:
    queue = await make_queue()
    seqs = await publish_pings(queue, range(5))
    actor = Joiner(queue.spec, poison=3)
    async with asyncio.timeout(RUN_LIMIT):
        await joiner_runner(queue, actor).run(until_idle=True)
    # The others went through (joined or alone), the poison one alone to the dead letters.
    assert sorted(n for ns in actor.handled for n in ns) == [0, 1, 2, 4]
    [letter] = await queue.dead_letters()
    assert letter.stream_seq == seqs[3]
    assert letter.deliveries == 1
    await queue.settled()
    assert await queue.stored() == 0


async def test_an_undecodable_delivery_among_joined_ones_is_dead_lettered_alone(
    make_queue: MakeQueue,
) -> None:
    queue = await make_queue()
    await publish_pings(queue, range(2))
    bad = await queue.publish_raw(b"not json")
    await publish_pings(queue, range(2, 4))
    actor = Joiner(queue.spec)
    async with asyncio.timeout(RUN_LIMIT):
        await joiner_runner(queue, actor).run(until_idle=True)
    assert sorted(n for ns in actor.handled for n in ns) == [0, 1, 2, 3]
    [letter] = await queue.dead_letters()
    assert letter.stream_seq == bad
    assert letter.payload == "not json"
