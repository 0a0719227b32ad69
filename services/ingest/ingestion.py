"""Ingestion: one accepted transaction's CSV -> message records, row errors, send batches.

Re-running it for the same transaction (a redelivery after a crash, the tracker's recovery
of a stuck one) is harmless: message, batch and row-error ids are derived from the row
number, so a second pass inserts nothing new -- it re-reads the file (the duplicate checks
need every row) but skips writing the batches the first pass finished -- and the final
counters are set once, by a conditional update.

A file that cannot be sent (unreadable, empty, over a limit, a bad header, no valid row)
fails the transaction, and FAILED leaves no partial state: the messages and batches already
written are removed; the row errors stay, they explain the failure. The order is FAILED
first -- recording how many batches were written, in the same update -- then the removal,
batch by batch (its messages by ``_id: {$in}``, then the batch document). A crash in
between leaves a FAILED transaction with ``batches > 0``; the redelivered event finds it
so and finishes the removal, without reading the file again. A transaction FAILED before
its counters were set is always ingest's: until then no other service has seen it.

Send times: each valid row is due at its own ``send_at``, else the transaction's, else at
once. Rows due in the same minute form a slot (``shared.schedule``) and go into batches of
their own, each ``Batch`` naming its slot; rows due at once (no time, or a time not after
the acceptance) are the slot "now" and become READY_TO_SEND messages, the others
SCHEDULED. A slot's batches fill up as its rows come; when too many slots are open at once
the fullest open batch is written early, so memory stays bounded by a few batches whatever
the order of the rows. At the end one ``Slot`` document per slot (its batches, its fire
time) is written for the scheduler, and the transaction's ``schedule`` with the counters.
Every time is judged against the acceptance time (``created_at``): a second pass after a
crash makes the same rows, batches and slots.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from botocore.exceptions import BotoCoreError, ClientError
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from services.ingest.csv_source import read_records
from services.ingest.validation import (
    FileError,
    FileErrorCode,
    HeaderError,
    RowChecker,
    ValidRow,
    missing_columns,
    missing_columns_error,
    no_valid_rows_error,
    read_header,
)
from shared.actor import Actor
from shared.broker import Broker
from shared.clock import to_stored
from shared.documents import (
    Batch,
    Message,
    RowError,
    Schedule,
    Slot,
    StoredRowError,
    Transaction,
    from_document,
    message_id,
    suppression_id,
    to_document,
)
from shared.errors import InputError, UpstreamUnavailable
from shared.events import TxAccepted, TxIngested
from shared.metrics import ROWS_INGESTED
from shared.records import load_template, load_transaction
from shared.schedule import IMMEDIATE, fire_time, slot_of
from shared.settings import IngestSettings
from shared.status import MessageStatus, TxStatus
from shared.store import Store, find_in
from shared.topology import CONSUMERS, Subjects
from shared.transitions import transition_tx

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

__all__ = ["IngestActor"]

log = structlog.get_logger("ingest")

_DUPLICATE_KEY = 11000
_CHUNK_BYTES = 256 * 1024
_PROGRESS_SECONDS = 0.5
# Slots with a batch being filled, at most; and rows held in them, in batches' worth.
_MAX_OPEN_SLOTS = 64
_MAX_BUFFERED_BATCHES = 4
# Slot documents per insert.
_SLOTS_PER_WRITE = 1000
# Batch ids looked up per query when a second pass looks for what the first one wrote.
_PROBE = 100


class IngestActor(Actor[TxAccepted]):
    spec = CONSUMERS.INGEST
    event_type = TxAccepted

    def __init__(
        self, store: Store, broker: Broker, s3: S3Client, settings: IngestSettings
    ) -> None:
        self.store = store
        self.broker = broker
        self.s3 = s3
        self.settings = settings

    async def handle(self, event: TxAccepted) -> None:
        tx = await load_transaction(self.store, event.transaction_id)
        if tx.status == TxStatus.ACCEPT and tx.cancel_requested_at is not None:
            # Cancelled before it was read: nothing to read, nothing to send.
            await transition_tx(self.store, self.broker, tx, TxStatus.CANCELLED)
            log.info("cancelled before ingest")
            return
        if tx.status == TxStatus.ACCEPT:
            await transition_tx(self.store, self.broker, tx, TxStatus.PROCESSING)
            tx = await load_transaction(self.store, tx.id)
        if _failed_in_ingest(tx) and tx.batches > 0:
            # A crash cut the removal short: finish it.
            await self._roll_back(tx, tx.batches)
            return
        if tx.status != TxStatus.PROCESSING:
            log.info("already ingested", status=tx.status)
            return
        if "total" not in tx.counters:
            await self._ingest(tx)
            tx = await load_transaction(self.store, tx.id)
        if tx.status == TxStatus.PROCESSING:
            await self.broker.publish(
                Subjects.TX_INGESTED,
                TxIngested(transaction_id=tx.id, batches=tx.batches),
                msg_id=f"{tx.id}:ingested",
            )

    async def _ingest(self, tx: Transaction) -> None:
        # Round trips, for the canonical line: exact while one file at a time is ingested.
        commands_before = self.store.commands.count
        template = await load_template(self.store, tx.template_id)
        limits = self.settings
        # A second pass (a redelivery, the tracker's recovery) skips rewriting what the
        # first one wrote in full.
        complete = await _complete_batches(self.store, tx.id)
        batch = _BatchWriter(self.store, tx, limits.batch_size, complete=complete)
        records = read_records(self._chunks(tx))
        try:
            header = await read_header(records, max_columns=limits.max_columns)
            await self.store.transactions.update_one(
                {"_id": tx.id}, {"$set": {"columns": list(header.names)}}
            )
            absent = missing_columns(header, template.placeholders)
            if absent:
                missing = missing_columns_error(absent)
                await self._fail(tx, missing.code, str(missing), missing.details)
                return
            # One checker for the whole file, from its first row: a re-run after a crash
            # re-reads the file from the start and so finds the same duplicates.
            rows = RowChecker(
                header,
                template.placeholders,
                max_rows=limits.max_rows,
                max_field_chars=limits.max_field_chars,
                now=tx.created_at,
                max_schedule_days=limits.max_schedule_days,
            )
            async for record in records:
                result = rows.check(record)
                if result is not None:
                    await batch.add(result, record.fields)
        except HeaderError as e:
            await self._fail(tx, e.code, str(e), {"column": e.column})
            return
        except FileError as e:
            await batch.drain()  # what is in flight must land before it is rolled back
            await self._fail(tx, e.code, str(e), e.details, written=batch.number)
            return
        except InputError as e:
            await batch.drain()
            await self._fail(tx, FileErrorCode.CSV_PARSING_ERROR, str(e), {}, written=batch.number)
            return
        await batch.finish()
        if batch.total == 0:
            none_valid = no_valid_rows_error(batch.invalid)
            await self._fail(tx, none_valid.code, str(none_valid), none_valid.details)
            return
        slots = batch.slots()
        for start in range(0, len(slots), _SLOTS_PER_WRITE):
            await _insert_new(
                self.store.slots, [to_document(s) for s in slots[start : start + _SLOTS_PER_WRITE]]
            )
        waiting = [s.fire_at for s in slots if s.slot != IMMEDIATE]
        schedule = Schedule(
            slots=len(slots),
            first_at=min(waiting, default=None),
            last_at=max(waiting, default=None),
        )
        pending = {
            f"counters.{status.lower()}": count
            for status, count in batch.pending.items()
            if count or (status == MessageStatus.READY_TO_SEND and not any(batch.pending.values()))
        }
        # Set once: a second pass after a crash must not reset counters the sender has
        # started to move.
        await self.store.transactions.update_one(
            {"_id": tx.id, "status": TxStatus.PROCESSING, "counters.total": {"$exists": False}},
            {
                "$set": {
                    "counters.total": batch.total,
                    "counters.invalid": batch.invalid,
                    # Suppressed messages are settled here: the sender has nothing to do
                    # for them (shared/settlement.py counts only what is still pending).
                    "counters.suppressed": batch.suppressed,
                    **pending,
                    "batches": batch.number,
                    "schedule": to_document(schedule),
                    "updated_at": datetime.now(UTC),
                }
            },
        )
        log.info(
            "ingested",
            total=batch.total,
            invalid=batch.invalid,
            suppressed=batch.suppressed,
            batches=batch.number,
            slots=len(slots),
            store_commands=self.store.commands.count - commands_before,
        )

    async def _chunks(self, tx: Transaction) -> AsyncIterator[bytes]:
        try:
            response = await self.s3.get_object(Bucket=tx.source.bucket, Key=tx.source.key)
            async with response["Body"] as body:
                async for chunk in body.iter_chunks(_CHUNK_BYTES):
                    yield chunk
        except (ClientError, BotoCoreError) as e:
            raise UpstreamUnavailable(
                f"reading s3://{tx.source.bucket}/{tx.source.key}: {e}"
            ) from e

    async def _fail(
        self,
        tx: Transaction,
        code: str,
        message: str,
        details: dict[str, Any],
        *,
        written: int = 0,
    ) -> None:
        """FAILED, then remove the ``written`` batches (and their messages) of this pass."""
        failure = {"code": code, "message": message, "details": details}
        await transition_tx(
            self.store,
            self.broker,
            tx,
            TxStatus.FAILED,
            metadata={"code": code},
            also_set={"failure": failure, "batches": written},
        )
        log.info("ingest failed", code=code, batches=written)
        current = await load_transaction(self.store, tx.id)
        # Also when another pass got to FAILED first: this one may have written more.
        batches = max(written, current.batches)
        if _failed_in_ingest(current) and batches > 0:
            await self._roll_back(current, batches)

    async def _roll_back(self, tx: Transaction, batches: int) -> None:
        """Remove batches ``0 .. batches - 1`` of a failed transaction and their messages.

        Idempotent: a batch already gone is skipped, and ``batches`` goes to 0 only once
        every one of them is gone.
        """
        for number in range(batches):
            batch_id = f"{tx.id}:{number}"
            raw = await self.store.batches.find_one({"_id": batch_id})
            if raw is None:
                continue
            batch = from_document(raw, Batch)
            ids = [message_id(tx.id, row) for row in batch.rows]
            await self.store.messages.delete_many({"_id": {"$in": ids}})
            await self.store.batches.delete_one({"_id": batch_id})
        await self.store.transactions.update_one(
            {"_id": tx.id, "status": TxStatus.FAILED}, {"$set": {"batches": 0}}
        )
        log.info("rolled back", batches=batches)


def _failed_in_ingest(tx: Transaction) -> bool:
    """FAILED before ingest set the counters: only ingest fails a transaction then."""
    return tx.status == TxStatus.FAILED and "total" not in tx.counters


class _SlotPlan:
    """A slot of the file so far: when it fires and its batches."""

    __slots__ = ("batches", "fire_at")

    def __init__(self, fire_at: datetime) -> None:
        self.fire_at = fire_at
        self.batches: list[int] = []


class _BatchWriter:
    """Collects valid rows by slot and row errors; writes them a batch at a time."""

    def __init__(
        self, store: Store, tx: Transaction, batch_size: int, *, complete: int = 0
    ) -> None:
        self.store = store
        self.tx = tx
        self.batch_size = batch_size
        # Batches below this number an earlier pass wrote in full: counted, not rewritten.
        self.complete = complete
        # Rows due at or before it are due at once (see ``RowChecker``'s ``now``).
        self.accepted_at = tx.created_at
        # Rows of each open slot, waiting for their batch; in the order the slots opened.
        self.open: dict[str, list[ValidRow]] = {}
        self.buffered = 0
        self.plans: dict[str, _SlotPlan] = {}
        self.errors: list[StoredRowError] = []
        self.number = 0
        self.total = 0
        self.invalid = 0
        # Messages to an address on the tenant's suppression list: stored, never sent.
        self.suppressed = 0
        # The others, by the status they start in.
        self.pending = {MessageStatus.SCHEDULED: 0, MessageStatus.READY_TO_SEND: 0}
        self._writing: asyncio.Task[None] | None = None
        self._reported = time.monotonic()

    async def add(self, result: ValidRow | RowError, fields: list[str]) -> None:
        """One checked row; ``fields`` are its values as in the file (kept with an error)."""
        if isinstance(result, RowError):
            self.errors.append(
                StoredRowError(
                    id=f"{self.tx.id}:{result.row}",
                    transaction_id=self.tx.id,
                    error=result,
                    fields=fields,
                )
            )
            self.invalid += 1
            ROWS_INGESTED.labels("invalid").inc()
            # A file of mostly invalid rows must not hold them in memory either.
            if len(self.errors) >= self.batch_size:
                await self._flush(None)
            return
        self.total += 1
        ROWS_INGESTED.labels("valid").inc()
        slot = self._slot(result)
        rows = self.open.setdefault(slot, [])
        rows.append(result)
        self.buffered += 1
        if len(rows) >= self.batch_size:
            await self._flush(slot)
        elif (
            len(self.open) > _MAX_OPEN_SLOTS
            or self.buffered > _MAX_BUFFERED_BATCHES * self.batch_size
        ):
            await self._flush(max(self.open, key=lambda s: len(self.open[s])))

    async def finish(self) -> None:
        """Write what is still open, the row errors and the final progress; wait for it."""
        for slot in list(self.open):
            await self._flush(slot)
        await self._flush(None, last=True)
        await self.drain()

    def slots(self) -> list[Slot]:
        """The slot documents of the file, once ``finish`` has written every batch."""
        return [
            Slot(
                id=f"{self.tx.id}:{slot}",
                transaction_id=self.tx.id,
                slot=slot,
                fire_at=plan.fire_at,
                batches=plan.batches,
            )
            for slot, plan in self.plans.items()
        ]

    def _slot(self, row: ValidRow) -> str:
        at = row.send_at or self.tx.send_at
        if at is None or at <= self.accepted_at:
            slot, fire = IMMEDIATE, self.accepted_at
        else:
            slot, fire = slot_of(at), fire_time(at)
        plan = self.plans.get(slot)
        if plan is None:
            self.plans[slot] = _SlotPlan(fire)
        elif fire > plan.fire_at:
            plan.fire_at = fire
        return slot

    async def _flush(self, slot: str | None, *, last: bool = False) -> None:
        """Hand a slot's open batch (and the row errors so far) to the store and go on
        reading while it is written.

        One write is in flight at a time: the next flush (or ``drain``) waits for it, so
        memory stays bounded and a write error surfaces at once. Progress is reported at
        most every ``_PROGRESS_SECONDS`` (and at the end), not per batch.
        """
        await self.drain()
        rows = [] if slot is None else self.open.pop(slot, [])
        self.buffered -= len(rows)
        number = self.number
        if rows and slot is not None:
            self.number += 1
            self.plans[slot].batches.append(number)
        errors = [to_document(e) for e in self.errors]
        self.errors = []
        progress: dict[str, int] | None = None
        now = time.monotonic()
        if last or now - self._reported >= _PROGRESS_SECONDS:
            progress = {"valid": self.total, "invalid": self.invalid}
            self._reported = now
        self._writing = asyncio.create_task(self._write(number, slot, rows, errors, progress))

    async def drain(self) -> None:
        """Wait for the write in flight, if any; its error, if any, is raised here."""
        writing, self._writing = self._writing, None
        if writing is not None:
            await writing

    async def _write(
        self,
        number: int,
        slot: str | None,
        rows: list[ValidRow],
        errors: list[dict[str, Any]],
        progress: dict[str, int] | None,
    ) -> None:
        async def batch_then_messages() -> None:
            if not rows or slot is None:
                return
            suppressed = await self._suppressed(rows)
            self.suppressed += len(suppressed)
            batch = Batch(
                id=f"{self.tx.id}:{number}",
                transaction_id=self.tx.id,
                number=number,
                rows=[row.row for row in rows],
                slot=slot,
            )
            # The batch first: a rollback finds a batch's messages through it, so no
            # message may exist without its batch document.
            messages = self._messages(number, slot, rows, suppressed)  # counts them too
            if number < self.complete:
                return
            await _insert_new(self.store.batches, [to_document(batch)])
            await _insert_new(self.store.messages, messages)

        async def errors_and_progress() -> None:
            if errors:
                await _insert_new(self.store.row_errors, errors)
            if progress is not None:
                await self.store.transactions.update_one(
                    {"_id": self.tx.id},
                    # The time tells the tracker's recovery this ingest is alive.
                    {
                        "$set": {
                            "ingest_progress": progress,
                            "ingest_progress_at": datetime.now(UTC),
                        }
                    },
                )

        await asyncio.gather(batch_then_messages(), errors_and_progress())

    async def _suppressed(self, rows: list[ValidRow]) -> set[str]:
        """The suppression ids, among these rows' addresses, on the tenant's list."""
        ids = [suppression_id(self.tx.tenant, row.email) for row in rows]
        found = find_in(self.store.suppressions, "_id", ids, projection={"_id": 1})
        return {str(doc["_id"]) async for doc in found}

    def _messages(
        self, number: int, slot: str, rows: list[ValidRow], suppressed: set[str]
    ) -> list[dict[str, Any]]:
        now = datetime.now(UTC)
        waiting = MessageStatus.READY_TO_SEND if slot == IMMEDIATE else MessageStatus.SCHEDULED
        messages = []
        for row in rows:
            status = (
                MessageStatus.SUPPRESSED
                if suppression_id(self.tx.tenant, row.email) in suppressed
                else waiting
            )
            if status is waiting:
                self.pending[waiting] += 1
            message = Message(
                id=message_id(self.tx.id, row.row),
                transaction_id=self.tx.id,
                tenant=self.tx.tenant,
                batch=number,
                row=row.row,
                email=row.email,
                data=row.data,
                status=status,
                send_at=_stored_time(row.send_at or self.tx.send_at),
                updated_at=now,
            )
            messages.append(to_document(message))
        return messages


async def _complete_batches(store: Store, transaction_id: str) -> int:
    """How many batches (from number 0) an earlier pass wrote in full.

    One batch's write (the batch, then its messages) finishes before the next one starts,
    so every batch below the highest one written is complete; that one may not be.
    """
    highest = -1
    while True:
        ids = [f"{transaction_id}:{n}" for n in range(highest + 1, highest + 1 + _PROBE)]
        found = [
            int(doc["number"])
            async for doc in store.batches.find({"_id": {"$in": ids}}, {"number": 1})
        ]
        if not found:
            return max(highest, 0)
        highest = max(found)


def _stored_time(at: datetime | None) -> datetime | None:
    """What the store keeps of ``at``: milliseconds."""
    return None if at is None else to_stored(at)


async def _insert_new(
    collection: AsyncCollection[dict[str, Any]], docs: Sequence[dict[str, Any]]
) -> None:
    """Insert, skipping documents already there from an earlier pass."""
    try:
        await collection.insert_many(list(docs), ordered=False)
    except BulkWriteError as e:
        if any(err.get("code") != _DUPLICATE_KEY for err in e.details.get("writeErrors", [])):
            raise
