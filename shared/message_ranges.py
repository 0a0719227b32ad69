"""Messages named by id, read and written a run of rows at a time.

Every message's id is ``message_id(transaction_id, row)`` (ingest makes them so), and the
ids a batch names are mostly consecutive rows: a send batch's chunk, the messages whose
SES events came in together. So rather than ``_id: {$in: ids}`` in pieces of ``MAX_IN``,
each run of consecutive rows is one filter, ``{transaction_id, row: {$gte, $lte}}`` (the
``transaction_row`` index), which matches exactly the messages of that run. Where the
rows are so scattered that there would be more runs than pieces, the pieces are used.

On SecantusDB a ``$in`` costs each document it meets a walk of its list: moving 250
messages by ``$in`` costs 0.80 ms a message, by a range of rows 0.43; reading them 0.23
against 0.03 (``python -m bench.store_in``). A range with rows left out (``$nin``, ``$nor``
or ``$or`` of ranges) is no better than the ``$in``: the store then does not bound its
index scan by the range. On MongoDB both are index bounds, and ranges only save the
pieces' round trips.

A range is bounded only where an index is (transaction, the query's equalities, row):
``transaction_row`` and ``transaction_status_row`` (shared/indexes.py). With any other
field in the query (the sender's ``attempt_id`` guard) SecantusDB walks every message of
the transaction instead, for each command: a run of 500 rows read all 20,000 of its
transaction, and the 100,000-recipient campaign sent 42 messages a second
(``python -m bench.store_in --guarded``). Such a query goes by ``$in`` pieces, which the
store bounds by ``_id`` whatever else the query says.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Final

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection

from shared.documents import message_row
from shared.indexes import INDEXES
from shared.store import MAX_IN, Collections, Document, find_where, in_pieces, update_where

__all__ = ["find_messages", "message_filters", "update_messages"]


def _bounded_queries() -> frozenset[frozenset[str]]:
    """The fields a query beside a range of rows may name and leave the range bounded by
    an index: those between ``transaction_id`` and ``row`` of each messages index."""
    bounded: set[frozenset[str]] = set()
    for index in INDEXES[Collections.MESSAGES]:
        fields = list(index.document["key"])
        if fields[0] == "transaction_id" and fields[-1] == "row":
            bounded.add(frozenset(fields[1:-1]))
    return frozenset(bounded)


_BOUNDED: Final = _bounded_queries()


def message_filters(
    ids: Sequence[str], query: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Filters that together match the messages of ``ids`` and no other, one command each
    (beside ``query``): a range of rows per run of them, or ``$in`` pieces where the rows
    are so scattered that ranges would take more commands, where ``query`` names fields no
    index bounds a range with, and for any id that is not a ``message_id``."""
    unique = list(dict.fromkeys(ids))
    if frozenset(query or {}) not in _BOUNDED:
        return [{"_id": {"$in": list(piece)}} for piece in in_pieces(unique)]
    rows_by_tx: dict[str, set[int]] = defaultdict(set)
    others: list[str] = []
    for id_ in unique:
        named = message_row(id_)
        if named is None:
            others.append(id_)
        else:
            rows_by_tx[named[0]].add(named[1])
    ranges = [
        {"transaction_id": transaction_id, "row": {"$gte": first, "$lte": last}}
        for transaction_id, rows in rows_by_tx.items()
        for first, last in _runs(sorted(rows))
    ]
    if math.ceil((len(unique) - len(others)) / MAX_IN) < len(ranges):
        ranges, others = [], unique
    return ranges + [{"_id": {"$in": list(piece)}} for piece in in_pieces(others)]


def find_messages(
    collection: AsyncCollection[Document],
    ids: Sequence[str],
    query: Mapping[str, Any] | None = None,
    projection: Mapping[str, Any] | None = None,
) -> AsyncIterator[Document]:
    """The messages of ``ids`` (that match ``query``), one read per filter."""
    filters = [(where, _most(where)) for where in message_filters(ids, query)]
    return find_where(collection, filters, query, projection)


async def update_messages(
    collection: AsyncCollection[Document],
    ids: Sequence[str],
    query: Mapping[str, Any],
    update: Mapping[str, Any],
    *,
    session: AsyncClientSession | None = None,
) -> int:
    """``update_many`` of the messages of ``ids`` that match ``query``, one command per
    filter; returns how many changed."""
    return await update_where(
        collection, message_filters(ids, query), query, update, session=session
    )


def _runs(rows: Sequence[int]) -> list[tuple[int, int]]:
    """``rows`` (sorted, distinct) as runs of consecutive rows, first and last."""
    runs: list[tuple[int, int]] = []
    for row in rows:
        if runs and row == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], row)
        else:
            runs.append((row, row))
    return runs


def _most(where: Mapping[str, Any]) -> int:
    """The most messages a filter of ``message_filters`` can match."""
    if "row" in where:
        return int(where["row"]["$lte"]) - int(where["row"]["$gte"]) + 1
    return len(where["_id"]["$in"])
