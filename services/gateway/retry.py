"""``POST /transactions/{id}/retry-failed``: a new transaction for the messages that failed.

Only a COMPLETED transaction is retried: every message of it has its outcome, so which ones
failed is settled. A FAILED transaction failed as a whole (its file; ``failure`` says why)
and is fixed by submitting a corrected file; a CANCELLED one was stopped on purpose, and
the last sends in flight when it ended may still change outcome — submit again if it must
go out after all. Both answer 409 ``TX_NOT_RETRYABLE``.

The recipients retried are those whose message is FAILED (SES refused it) or EXPIRED (no
outcome in time); never one that BOUNCED, COMPLAINED or was SUPPRESSED (resending would
hurt the sender's reputation) nor one DELIVERED or CANCELLED.

The retry goes through the normal submission path so that nothing downstream knows it is
one: a CSV file under the tenant's prefix — the original header (``Transaction.columns``),
then each retried message's address and placeholder values, the FAILED ones by row and then
the EXPIRED ones by row — streamed to S3 page by page
(``S3Upload``, never the whole file in memory), and a transaction in ACCEPT announced as a
submission's is. Its template, callback URL and metadata are the original's, plus
``metadata.retry_of``. A ``send_at`` column is written empty: the retry goes out now, and the
rows' original times are past.

Its id is derived from the original's (``retry_id``), so asking twice makes one transaction:
the second insert fails on the ``_id`` and the answer is the first's. The original records
it as ``retried_as``.
"""

from __future__ import annotations

import csv
import io
import uuid
from typing import TYPE_CHECKING, Final

from services.gateway.errors import ApiError, Code
from services.gateway.records import page_messages
from services.ingest.validation import EMAIL_COLUMN, SEND_AT_COLUMN, normalize_column
from shared.status import MessageStatus, TxStatus

if TYPE_CHECKING:
    from services.gateway.upload import S3Upload
    from shared.documents import Message, Transaction
    from shared.store import Store

__all__ = [
    "RETRIED_STATUSES",
    "RETRYABLE",
    "RETRY_OF",
    "check_retryable",
    "retried_count",
    "retry_id",
    "retry_metadata",
    "write_retry_file",
]

RETRYABLE: Final = frozenset({TxStatus.COMPLETED})
RETRIED_STATUSES: Final = (MessageStatus.FAILED, MessageStatus.EXPIRED)
RETRY_OF: Final = "retry_of"
# A namespace of our own for ``uuid5``: retry ids never collide with another derivation.
_NAMESPACE: Final = uuid.UUID("5b0f3c1e-2f4a-4c4e-9a57-7f2d1f0e8a61")
_PAGE: Final = 1000


def retry_id(transaction_id: str) -> str:
    """The id of the transaction retrying ``transaction_id``'s failures: always the same."""
    return uuid.uuid5(_NAMESPACE, f"retry-failed:{transaction_id}").hex


def check_retryable(tx: Transaction) -> None:
    """409 unless ``tx`` is COMPLETED with at least one FAILED or EXPIRED message."""
    if tx.status not in RETRYABLE:
        raise ApiError(
            Code.TX_NOT_RETRYABLE,
            f"transaction {tx.id!r} is {tx.status}; only a COMPLETED transaction can be retried",
            details={"transaction_id": tx.id, "status": tx.status},
        )
    if retried_count(tx) == 0:
        _nothing_to_retry(tx)


def retried_count(tx: Transaction) -> int:
    """How many messages a retry resends: exact, as every message of ``tx`` is final."""
    return sum(tx.counters.get(status.lower(), 0) for status in RETRIED_STATUSES)


def _nothing_to_retry(tx: Transaction) -> None:
    raise ApiError(
        Code.NOTHING_TO_RETRY,
        f"transaction {tx.id!r} has no FAILED or EXPIRED message",
        details={"transaction_id": tx.id},
    )


def retry_metadata(tx: Transaction) -> dict[str, str]:
    return {**tx.metadata, RETRY_OF: tx.id}


async def write_retry_file(store: Store, upload: S3Upload, tx: Transaction) -> int:
    """Write the retry's CSV to ``upload`` and complete it; how many rows it has.

    Raises NOTHING_TO_RETRY (having aborted the upload) when no message qualified after all.
    """
    columns = [normalize_column(name) for name in tx.columns]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(tx.columns)
    rows = 0
    try:
        for status in RETRIED_STATUSES:
            after = 0
            while True:
                page = await page_messages(store, tx.id, status=status, after=after, limit=_PAGE)
                writer.writerows(_fields(message, columns) for message in page)
                rows += len(page)
                await upload.write(buffer.getvalue().encode())
                buffer.seek(0)
                buffer.truncate()
                if len(page) < _PAGE:
                    break
                after = page[-1].row
        if rows == 0:
            _nothing_to_retry(tx)
        await upload.complete()
    except BaseException:
        await upload.abort()
        raise
    return rows


def _fields(message: Message, columns: list[str]) -> list[str]:
    """The message's row in the file's column order: the address ingest kept, an empty
    ``send_at`` (send now), every other value as it was in the file."""
    fields = []
    for column in columns:
        if column == EMAIL_COLUMN:
            fields.append(message.email)
        elif column == SEND_AT_COLUMN:
            fields.append("")
        else:
            fields.append(message.data.get(column, ""))
    return fields
