"""A transaction's row errors as a CSV file, ready to fix and resubmit.

The file's own header row, then ``error_code`` and ``error_message``; one line per row
error in row order, holding the row's fields as they were in the file. The csv module
quotes them again as needed, so separators, quotes and line breaks inside a value survive;
the separator is a comma whatever the original's was (ingest detects it on resubmission).
A row with fewer fields than the header (``FIELD_COUNT_MISMATCH``) is padded with empty
fields so the error columns stay in place; a row with more keeps them all, before its
error columns.

The lines are written page by page as the store returns them: the errors of a file are
never all in memory.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Final

from services.gateway.records import page_row_errors
from shared.documents import Transaction
from shared.store import Store

__all__ = ["ERROR_COLUMNS", "row_errors_csv"]

ERROR_COLUMNS: Final = ("error_code", "error_message")
_PAGE: Final = 500


async def row_errors_csv(
    store: Store, tx: Transaction, *, code: str | None = None, page_size: int = _PAGE
) -> AsyncIterator[bytes]:
    """The CSV text of ``tx``'s row errors (only ``code``'s, when given), a page a chunk."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([*tx.columns, *ERROR_COLUMNS])
    width = len(tx.columns)
    after: tuple[int, str] | None = None
    while True:
        page = await page_row_errors(store, tx.id, after=after, limit=page_size, code=code)
        for stored in page:
            padding = [""] * (width - len(stored.fields))
            writer.writerow([*stored.fields, *padding, stored.error.code, stored.error.message])
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
        if len(page) < page_size:
            return
        after = (page[-1].error.row, page[-1].id)
