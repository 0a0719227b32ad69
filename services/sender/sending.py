"""Sending one batch, exactly once, in chunks: claim, send, record.

    resolve   messages a crashed attempt left SENDING: a receipt (SES's answer, or its
              Send event seen by the tracker) makes them SENT; without one, once the
              lease and a grace period are over and the tracker has read every SES event
              published by then, they go back to READY_TO_SEND; until then the batch
              comes back later
    claim     READY_TO_SEND -> SENDING for a chunk, with an attempt id and a lease, in one
              conditional update (one sender wins each message; none once a cancel is
              asked for)
    send      render + SES SendEmail at the moment the shared pacer hands out; throttling,
              5xx and connection errors retried in place with backoff and jitter; a
              paused account holds every send until it is cleared
    record    receipts first, then SENDING -> SENT for the chunk in one update; refused
              mail -> FAILED with the reason; retries exhausted -> FAILED and a dead letter

Every message and counter change goes through ``move_messages`` (a store transaction), so
a kill -9 at any point leaves the counters exact. A call SES did not answer in time stays
SENDING and is resolved like a crashed attempt: never sent twice on a guess. In-flight
calls follow from the pace: rate x SES latency (Little's law), capped by
``send_concurrency``.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import stamina
import structlog
from msgspec.structs import replace
from pymongo.asynchronous.client_session import AsyncClientSession
from stamina.instrumentation import RetryDetails, set_on_retry_hooks

from services.sender.mime import MimeError
from services.sender.pacer import Pacer
from services.sender.pause import Pause
from services.sender.ses import Ses, SesPaused, SesRejected, SesThrottled, SesUnanswered
from shared.actor import Actor
from shared.aws import open_sesv2
from shared.broker import Broker
from shared.documents import (
    DeadLetter,
    Message,
    SendReceipt,
    Transaction,
    from_document,
    to_document,
)
from shared.errors import RetryableError, TemplateError, UpstreamUnavailable
from shared.events import MessageOutcome, SendBatch
from shared.message_ranges import find_messages, update_messages
from shared.metrics import (
    MESSAGES_FAILED,
    SES_BACKOFF_SECONDS,
    SES_RATE_CEILING,
    SES_SENDS,
    SES_THROTTLES,
)
from shared.outcomes import announce_moved
from shared.records import keep_dead_letter, load_template, load_transaction
from shared.service import Runtime
from shared.settings import (
    MAX_BATCH_SIZE,
    SenderSettings,
    require_public_base_url,
    require_unsubscribe_secret,
)
from shared.settlement import settle
from shared.status import MessageStatus as M
from shared.status import TxStatus
from shared.store import Store, find_in, insert_new
from shared.template import CompiledTemplate, RenderedEmail, compile_template
from shared.topology import CONSUMERS, KV, Subjects
from shared.transitions import move_messages
from shared.unsubscribe import list_unsubscribe_headers

__all__ = ["SenderActor", "UnsubscribeLinks", "open_sender", "simulator_address"]

log = structlog.get_logger("sender")


class _Sent(msgspec.Struct, frozen=True):
    ses_message_id: str


class _Failed(msgspec.Struct, frozen=True):
    code: str
    reason: str
    # Retries exhausted: kept as a dead letter for manual review as well.
    dead: bool = False


class _Unanswered(msgspec.Struct, frozen=True):
    reason: str


_Result = _Sent | _Failed | _Unanswered


class _Template(msgspec.Struct, frozen=True):
    compiled: CompiledTemplate
    marketing: bool


class UnsubscribeLinks(msgspec.Struct, frozen=True, kw_only=True):
    """Where the gateway serves unsubscribe links, and the key that signs them."""

    base_url: str
    secret: str


def _count_backoff(details: RetryDetails) -> None:
    SES_BACKOFF_SECONDS.inc(details.wait_for)


def _retryable(error: Exception) -> bool:
    # A pause is waited out, not retried; an unanswered call must not be repeated blind.
    return isinstance(error, UpstreamUnavailable) and not isinstance(
        error, SesPaused | SesUnanswered
    )


async def _set_in_transaction(
    store: Store, ids: Sequence[str], query: Mapping[str, Any], fields: Mapping[str, Any]
) -> None:
    """``$set`` ``fields`` on the messages of ``ids`` that ``query`` matches, in a store
    transaction (one ``update_many`` per run of rows: shared/message_ranges.py).

    Not a bare ``update_many``: the embedded store (SecantusDB 0.7) runs a multi-document
    update outside a transaction in chunks and retries its write conflicts without end while
    it holds the collection's lock; when the conflict is with a store transaction that is
    moving the same messages (``move_messages``), that transaction's next statement waits
    for the lock and the whole store deadlocks (tests/chaos: a lease renewal in flight as
    its chunk went SENDING -> SENT). In a transaction a conflict aborts the statement at
    once and ``with_transaction`` tries again.
    """

    async def apply(session: AsyncClientSession) -> None:
        await update_messages(store.messages, ids, query, {"$set": dict(fields)}, session=session)

    async with store.client.start_session() as session:
        await session.with_transaction(apply)


class SenderActor(Actor[SendBatch]):
    spec = CONSUMERS.SENDER
    event_type = SendBatch

    def __init__(
        self,
        store: Store,
        broker: Broker,
        ses: Ses,
        pacer: Pacer,
        pause: Pause,
        settings: SenderSettings,
        links: UnsubscribeLinks,
    ) -> None:
        self.store = store
        self.broker = broker
        self.ses = ses
        self.pacer = pacer
        self.pause = pause
        self.settings = settings
        self.links = links
        self.lease = timedelta(seconds=settings.send_lease_seconds)
        self.grace = timedelta(seconds=settings.send_resolve_grace_seconds)
        # About a second of sending, at most send_chunk_size: its SENT is recorded that
        # often, and each chunk costs the same few store round trips whatever its size.
        self._chunk_size = max(1, min(settings.send_chunk_size, math.ceil(pacer.rate)))
        # Claimed chunks at once in this process: about two seconds of sending, enough to
        # keep the pacer busy while other chunks are claimed and recorded; at least four
        # (a batch smaller than a chunk is a smaller chunk).
        chunks = math.ceil(pacer.rate * 2.0 / self._chunk_size)
        self._chunks = asyncio.Semaphore(max(4, chunks))
        self._calls = asyncio.Semaphore(settings.send_concurrency)
        self._writes = asyncio.Lock()
        self._templates: dict[str, _Template] = {}
        # stamina's hooks are process-wide; ours counts every backoff wait, in seconds.
        set_on_retry_hooks([_count_backoff])

    async def handle(self, event: SendBatch) -> None:
        tx = await load_transaction(self.store, event.transaction_id)
        if tx.status != TxStatus.READY_TO_SEND:
            log.info("not sending", status=tx.status, batch=event.batch)
            return
        messages = await self._messages(tx.id, event.batch)
        waiting, unresolved = await self._resolve(tx.id, messages)
        waiting = await self._drop_suppressed(tx, waiting)
        template = await self._template(tx.template_id)
        test_mode = tx.mode == "test"
        totals: dict[str, int] = defaultdict(int)
        size = self._chunk_size
        for start in range(0, len(waiting), size):
            async with self._chunks:
                counts = await self._send_chunk(
                    tx.id, template, waiting[start : start + size], test_mode
                )
            for key, n in counts.items():
                totals[key] += n
        settled = await settle(self.store, self.broker, tx.id)
        log.info(
            "batch sent",
            batch=event.batch,
            waiting=len(waiting),
            unresolved=unresolved,
            settled=settled,
            **totals,
        )
        # Not acknowledged while any message of the batch may still be unsent: those that
        # wait for SES's events, and those another attempt took from under this one (a
        # redelivery running beside this handling). Acknowledged, the batch would not come
        # back if that attempt failed: its own nak is lost once this ack is in.
        pending = unresolved + totals["unanswered"] + totals["elsewhere"]
        if pending:
            raise RetryableError(
                f"{pending} messages of batch {event.batch} wait for SES's Send events"
                " or another attempt"
            )

    async def _messages(self, transaction_id: str, number: int) -> list[Message]:
        # By the (transaction_id, batch) index: one query, and on the embedded store far
        # cheaper than a long ``_id: {$in: ...}``; the whole batch in its first answer.
        found = [
            from_document(doc, Message)
            async for doc in self.store.messages.find(
                {"transaction_id": transaction_id, "batch": number}, batch_size=MAX_BATCH_SIZE + 1
            )
        ]
        if not found:
            raise RetryableError(f"batch {number} of {transaction_id} is not stored yet")
        found.sort(key=lambda m: m.row)
        return found

    async def _drop_suppressed(self, tx: Transaction, waiting: Sequence[Message]) -> list[Message]:
        """Ingest left the addresses on the suppression list behind; these went on it since
        (an unsubscribe, a bounce, a complaint): they are SUPPRESSED, not sent."""
        since = next((e.at for e in tx.status_history if e.status == TxStatus.PROCESSING), None)
        query: dict[str, Any] = {"tenant": tx.tenant}
        if since is not None:
            query["created_at"] = {"$gte": since}
        added = {
            str(doc["email"]).lower()
            async for doc in self.store.suppressions.find(query, {"email": 1})
        }
        dropped = [m for m in waiting if m.email.lower() in added]
        if dropped:
            await self._conclude(dropped, M.READY_TO_SEND, M.SUPPRESSED)
            log.info("suppressed since ingest", messages=len(dropped))
        return [m for m in waiting if m.email.lower() not in added]

    async def _template(self, template_id: str) -> _Template:
        found = self._templates.get(template_id)
        if found is None:
            template = await load_template(self.store, template_id)
            # In a thread: a large template takes seconds to compile, and the sends of
            # other batches go on meanwhile.
            compiled = await asyncio.to_thread(
                compile_template, template.subject, template.html, template.text
            )
            found = self._templates[template_id] = _Template(compiled, template.marketing)
        return found

    # -- resolve -----------------------------------------------------------------------

    async def _resolve(
        self, transaction_id: str, messages: Sequence[Message]
    ) -> tuple[list[Message], int]:
        """The batch's messages that may be sent now, and how many must wait to be
        resolved (SENDING under another attempt, or ambiguous and not yet decidable)."""
        now = datetime.now(UTC)
        waiting = [m for m in messages if m.status == M.READY_TO_SEND]
        sending = [m for m in messages if m.status == M.SENDING]
        expired = [m for m in sending if m.lease_until is None or m.lease_until <= now]
        unresolved = len(sending) - len(expired)  # a live attempt holds them
        if not expired:
            return waiting, unresolved
        receipts = {
            str(doc["_id"])
            async for doc in find_in(
                self.store.sends, "_id", [m.id for m in expired], projection={"_id": 1}
            )
        }
        sent = [m.id for m in expired if m.id in receipts]
        if sent:
            await self._move(transaction_id, sent, M.SENDING, M.SENT, also_set={"sent_at": now})
        unknown = [m for m in expired if m.id not in receipts]
        lapsed = [m for m in unknown if m.lease_until is None or m.lease_until + self.grace <= now]
        decidable = await self._events_read(lapsed)
        unresolved += len(unknown) - len(decidable)
        if decidable:
            # SES never saw them: each goes back, guarded by the attempt that left it.
            by_attempt: dict[str | None, list[str]] = defaultdict(list)
            for m in decidable:
                by_attempt[m.attempt_id].append(m.id)
            for attempt_id, ids in by_attempt.items():
                await self._move(
                    transaction_id,
                    ids,
                    M.SENDING,
                    M.READY_TO_SEND,
                    guard={"attempt_id": attempt_id},
                    also_set={"resolve_after_seq": None},
                )
            back = {m.id for m in decidable}
            waiting += [
                from_document(doc, Message)
                async for doc in find_messages(
                    self.store.messages, sorted(back), {"status": M.READY_TO_SEND}
                )
            ]
            log.warning("unsent after a lost attempt", resent=len(back), receipts=len(sent))
        waiting.sort(key=lambda m: m.row)
        return waiting, unresolved

    async def _events_read(self, lapsed: Sequence[Message]) -> list[Message]:
        """Of the lapsed messages without a receipt, those SES never had: the tracker has
        read every SES event published by the time they had lapsed (so a Send event of
        theirs would have left its receipt). The first time a message is seen lapsed it
        is marked with the events stream's last sequence; it is decided when the
        tracker's acknowledged floor has passed that mark."""
        if not lapsed:
            return []
        spec = CONSUMERS.TRACKER_EVENTS
        floor = (await self.broker.js.consumer_info(spec.stream, spec.durable)).ack_floor
        read_up_to = floor.stream_seq if floor is not None and floor.stream_seq else 0
        marks = {m.id: m.resolve_after_seq for m in lapsed}
        unmarked = [id_ for id_, mark in marks.items() if mark is None]
        if unmarked:
            last = (await self.broker.js.stream_info(spec.stream)).state.last_seq
            await _set_in_transaction(
                self.store, unmarked, {"status": M.SENDING}, {"resolve_after_seq": last}
            )
            marks.update(dict.fromkeys(unmarked, last))
        return [m for m in lapsed if (marks[m.id] or 0) <= read_up_to]

    # -- claim, send, record -----------------------------------------------------------

    async def _move(
        self, transaction_id: str, ids: Sequence[str], old: M, new: M, **options: Any
    ) -> int:
        """``move_messages``, one at a time in this process: store transactions running
        together on one transaction's counters conflict, and each conflict is a retry."""
        async with self._writes:
            return await move_messages(self.store, transaction_id, ids, old, new, **options)

    async def _conclude(self, messages: Sequence[Message], old: M, new: M, **options: Any) -> int:
        """``_move`` to an outcome (FAILED, SUPPRESSED), announced on email.msg.status."""
        first = messages[0]
        ids = [m.id for m in messages]
        moved = await self._move(first.transaction_id, ids, old, new, **options)
        known = {m.id: MessageOutcome(message_id=m.id, row=m.row, email=m.email) for m in messages}
        await announce_moved(
            self.store, self.broker, first.transaction_id, first.tenant, new, ids, moved, known
        )
        return moved

    async def _send_chunk(
        self,
        transaction_id: str,
        template: _Template,
        chunk: Sequence[Message],
        test_mode: bool,
    ) -> dict[str, int]:
        claimed, elsewhere = await self._claim(transaction_id, chunk)
        if not claimed:
            return {"elsewhere": elsewhere}
        renewing = asyncio.create_task(self._renew(claimed))
        try:
            results = await asyncio.gather(*(self._send(m, template, test_mode) for m in claimed))
        finally:
            renewing.cancel()
        return {**await self._record(transaction_id, claimed, results), "elsewhere": elsewhere}

    async def _claim(
        self, transaction_id: str, chunk: Sequence[Message]
    ) -> tuple[list[Message], int]:
        """The chunk's messages this attempt now holds, and how many another attempt holds
        (SENDING, not ours)."""
        attempt_id = uuid.uuid4().hex
        ids = [m.id for m in chunk]
        moved = await self._move(
            transaction_id,
            ids,
            M.READY_TO_SEND,
            M.SENDING,
            also_set={"attempt_id": attempt_id, "lease_until": datetime.now(UTC) + self.lease},
            message_inc={"attempts": 1},
            # Once a cancel is asked for, nothing more is claimed.
            tx_guard={"cancel_requested_at": None},
        )
        if moved < len(ids):
            # Someone else (a cancel, another replica) took some, or none of them moved
            # because the driver ran the store transaction again after its commit's answer
            # was lost (the store restarting): the first run's claim holds. Either way ours
            # are the ones that carry our attempt.
            found = {
                str(doc["_id"]): doc
                async for doc in find_messages(
                    self.store.messages, ids, projection={"status": 1, "attempt_id": 1}
                )
            }
            waiting = sum(1 for doc in found.values() if doc["status"] == M.READY_TO_SEND)
            # Not moved, and no cancel stopped them: our claim's outcome is not known yet.
            # A commit whose answer was lost can still be applying, its messages turning
            # SENDING under our attempt after this read (a chaos trial saw it). Handle the
            # batch again later, as after a crash: they are then either still waiting, or
            # ours with a lease that lapses and is settled.
            if waiting and (await self._cancel_requested(transaction_id)) is None:
                raise RetryableError(
                    f"{waiting} messages of {transaction_id} unclaimed without a cancel"
                )
            elsewhere = sum(
                1
                for doc in found.values()
                if doc["status"] == M.SENDING and doc.get("attempt_id") != attempt_id
            )
            chunk = [m for m in chunk if found.get(m.id, {}).get("attempt_id") == attempt_id]
        else:
            elsewhere = 0
        claimed = [
            replace(m, status=M.SENDING, attempt_id=attempt_id, attempts=m.attempts + 1)
            for m in chunk
        ]
        return claimed, elsewhere

    async def _cancel_requested(self, transaction_id: str) -> datetime | None:
        return (await load_transaction(self.store, transaction_id)).cancel_requested_at

    async def _renew(self, claimed: Sequence[Message]) -> None:
        """Keep the lease of a chunk that takes long (a low rate, a pause, retries)."""
        ids = [m.id for m in claimed]
        attempt_id = claimed[0].attempt_id
        while True:
            await asyncio.sleep(self.lease.total_seconds() / 3)
            # Shielded: the chunk's end cancels this task, and a store transaction cut off
            # mid-statement would stay open on these messages until the store reaps it,
            # holding up the chunk's own SENDING -> SENT.
            await asyncio.shield(
                _set_in_transaction(
                    self.store,
                    ids,
                    {"status": M.SENDING, "attempt_id": attempt_id},
                    {"lease_until": datetime.now(UTC) + self.lease},
                )
            )

    async def _send(self, m: Message, template: _Template, test_mode: bool) -> _Result:
        try:
            mail = template.compiled.render({**m.data, "email": m.email})
        except TemplateError as e:
            return _Failed("TEMPLATE_RENDER_ERROR", str(e))
        to = simulator_address(m.email) if test_mode else m.email
        # Bulk-sender rules (Gmail, Yahoo): marketing mail carries a one-click unsubscribe.
        headers = (
            list_unsubscribe_headers(self.links.base_url, self.links.secret, m.tenant, m.email)
            if template.marketing
            else None
        )
        while True:
            try:
                ses_id = await self._call_with_retries(to, mail, m, headers)
            except SesPaused as e:
                await self.pause.enter(str(e))
                continue  # the next call waits until the pause is cleared or probed
            except SesUnanswered as e:
                SES_SENDS.labels("unanswered").inc()
                return _Unanswered(str(e))
            except SesRejected as e:
                SES_SENDS.labels("rejected").inc()
                return _Failed(e.code, e.reason)
            except MimeError as e:
                return _Failed("INVALID_MIME", str(e))
            except UpstreamUnavailable as e:
                return _Failed("RETRIES_EXHAUSTED", str(e), dead=True)
            SES_SENDS.labels("sent").inc()
            if self.pause.active:
                await self.pause.clear()
            return _Sent(ses_id)

    async def _call_with_retries(
        self, to: str, mail: RenderedEmail, m: Message, headers: Mapping[str, str] | None
    ) -> str:
        s = self.settings
        async for attempt in stamina.retry_context(
            on=_retryable,
            attempts=s.send_retry_attempts,
            timeout=s.send_retry_timeout_seconds,
            wait_initial=0.2,
            wait_max=s.send_retry_max_wait_seconds,
            wait_jitter=1.0,
        ):
            with attempt:
                await self.pause.wait()
                await self.pacer.turn()
                try:
                    async with self._calls:
                        ses_id = await self.ses.send(to, mail, _tags(m), headers=headers)
                except SesThrottled:
                    SES_THROTTLES.inc()
                    SES_SENDS.labels("throttled").inc()
                    self.pacer.throttled()
                    raise
                except UpstreamUnavailable as e:
                    if _retryable(e):
                        SES_SENDS.labels("unavailable").inc()
                    raise
                self.pacer.succeeded()
                return ses_id
        raise AssertionError("unreachable: stamina re-raises the last error")

    async def _record(
        self, transaction_id: str, claimed: Sequence[Message], results: Sequence[_Result]
    ) -> dict[str, int]:
        now = datetime.now(UTC)
        attempt = {"attempt_id": claimed[0].attempt_id}
        sent = [(m, r) for m, r in zip(claimed, results, strict=True) if isinstance(r, _Sent)]
        receipts = [
            to_document(
                SendReceipt(
                    id=m.id,
                    transaction_id=transaction_id,
                    ses_message_id=r.ses_message_id,
                    at=now,
                    source="sender",
                )
            )
            for m, r in sent
        ]
        # Receipts first: a crash after them still leaves the proof that SES has the mail.
        await insert_new(self.store.sends, receipts)
        await self._move(
            transaction_id,
            [m.id for m, _ in sent],
            M.SENDING,
            M.SENT,
            also_set={"sent_at": now},
            guard=attempt,
        )
        failed = 0
        for m, r in zip(claimed, results, strict=True):
            if not isinstance(r, _Failed):
                continue
            failed += 1
            error = {"code": r.code, "message": r.reason, "at": now}
            if r.dead:
                await self._dead_letter(m, r)
            moved = await self._conclude(
                [m], M.SENDING, M.FAILED, also_set={"last_error": error}, guard=attempt
            )
            MESSAGES_FAILED.labels(r.code).inc(moved)
        unanswered = sum(isinstance(r, _Unanswered) for r in results)
        return {"sent": len(sent), "failed": failed, "unanswered": unanswered}

    async def _dead_letter(self, m: Message, failure: _Failed) -> None:
        letter = DeadLetter(
            id=f"message:{m.id}",
            kind="message",
            service="sender",
            subject=Subjects.SEND_BATCH,
            stream_seq=0,
            deliveries=m.attempts,
            payload=msgspec.json.encode({"message_id": m.id, "email": m.email}).decode(),
            error=f"{failure.code}: {failure.reason}",
            at=datetime.now(UTC),
            transaction_id=m.transaction_id,
            message_id=m.id,
        )
        await keep_dead_letter(self.store, letter)


async def open_sender(rt: Runtime, settings: SenderSettings) -> SenderActor:
    """The sender on ``rt``'s clients, with its SES client, the shared pacer and pause."""
    client = await open_sesv2(
        rt.exits,
        settings,
        settings.ses_endpoint_url,
        read_timeout=settings.ses_timeout_seconds,
        connections=settings.send_concurrency,
    )
    links = UnsubscribeLinks(
        base_url=require_public_base_url(settings), secret=require_unsubscribe_secret(settings)
    )
    ses = Ses(client, settings.ses_from_address, settings.ses_configuration_set)
    rate = settings.ses_max_send_rate or await ses.max_send_rate()
    SES_RATE_CEILING.set(rate)
    kv = await rt.broker.js.key_value(KV.SENDER.bucket)
    pacer = Pacer(kv, rate)
    pause = Pause(kv, rt.broker, rt.store, probe_seconds=settings.pause_probe_seconds)
    return SenderActor(rt.store, rt.broker, ses, pacer, pause, settings, links)


def _tags(m: Message) -> dict[str, str]:
    """SES tags every event of this mail carries back; SES allows only [A-Za-z0-9_-] in
    tag values, so the message id ``<tx>:<row>`` is written with a dash."""
    return {
        "message_id": f"{m.transaction_id}-{m.row}",
        "transaction_id": m.transaction_id,
        "row": str(m.row),
    }


SIMULATOR_DOMAIN = "simulator.amazonses.com"


def simulator_address(email: str) -> str:
    """Where a test-mode message goes: SES's mailbox simulator, never a real mailbox.

    A simulator address keeps its scenario (``bounce@``, ``complaint+x@``...); any other
    address becomes ``success@``: the whole pipeline runs, with SES's own events, and no
    mail reaches a person.
    """
    if email.rpartition("@")[2].lower() == SIMULATOR_DOMAIN:
        return email
    return f"success@{SIMULATOR_DOMAIN}"
