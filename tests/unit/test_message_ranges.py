"""Messages by runs of rows (shared/message_ranges.py): the filters match exactly the ids
asked for, never more commands than ``$in`` pieces would take; and ``message_row``
reads back only what ``message_id`` writes."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.documents import message_id, message_row
from shared.message_ranges import message_filters, update_messages
from shared.store import MAX_IN

# Every message of two transactions, rows 0-899, as the store holds them.
_UNIVERSE = [
    {"_id": message_id(tx, row), "transaction_id": tx, "row": row}
    for tx in ("tx-a", "tx:b")
    for row in range(900)
]


def _matches(where: dict[str, Any], doc: dict[str, Any]) -> bool:
    """The store's match, for the two shapes of filter ``message_filters`` makes."""
    if "row" in where:
        rows = where["row"]
        return bool(
            doc["transaction_id"] == where["transaction_id"]
            and rows["$gte"] <= doc["row"] <= rows["$lte"]
        )
    return bool(doc["_id"] in where["_id"]["$in"])


def _selected(ids: list[str]) -> list[str]:
    filters = message_filters(ids)
    return sorted(d["_id"] for d in _UNIVERSE if any(_matches(f, d) for f in filters))


_IDS = st.lists(
    st.builds(message_id, st.sampled_from(["tx-a", "tx:b"]), st.integers(0, 899)),
    max_size=1200,
)


@given(_IDS)
def test_the_filters_match_the_ids_asked_for_and_no_other(ids: list[str]) -> None:
    assert _selected(ids) == sorted(set(ids))


@given(_IDS)
def test_never_more_commands_than_in_pieces(ids: list[str]) -> None:
    assert len(message_filters(ids)) <= math.ceil(len(set(ids)) / MAX_IN)


def test_consecutive_rows_are_one_range_whatever_their_number() -> None:
    ids = [message_id("tx", row) for row in reversed(range(5, 2005))]
    assert message_filters(ids) == [{"transaction_id": "tx", "row": {"$gte": 5, "$lte": 2004}}]


def test_two_runs_two_ranges_and_scattered_rows_pieces() -> None:
    two_runs = [message_id("tx", row) for row in (*range(0, 300), *range(400, 700))]
    assert message_filters(two_runs) == [
        {"transaction_id": "tx", "row": {"$gte": 0, "$lte": 299}},
        {"transaction_id": "tx", "row": {"$gte": 400, "$lte": 699}},
    ]
    scattered = [message_id("tx", row) for row in range(0, 1000, 2)]
    assert [len(f["_id"]["$in"]) for f in message_filters(scattered)] == [MAX_IN, MAX_IN]


def test_a_query_no_index_bounds_a_range_with_goes_by_pieces() -> None:
    # The sender's guard: on the embedded store a range beside it would read every message
    # of the transaction, for each command.
    run = [message_id("tx", row) for row in range(0, 600)]
    guarded = message_filters(run, {"status": "SENDING", "attempt_id": "a"})
    assert [f["_id"]["$in"] for f in guarded] == [run[:MAX_IN], run[MAX_IN : 2 * MAX_IN], run[500:]]
    # transaction_status_row and transaction_row bound these.
    for bounded in ({"status": "SENDING"}, {}, None):
        assert message_filters(run, bounded) == [
            {"transaction_id": "tx", "row": {"$gte": 0, "$lte": 599}}
        ]


def test_ids_that_are_not_message_ids_are_asked_for_by_id() -> None:
    ids = ["tx:1", "tx:2", "sqs-7", "tx:03"]
    assert message_filters(ids) == [
        {"transaction_id": "tx", "row": {"$gte": 1, "$lte": 2}},
        {"_id": {"$in": ["sqs-7", "tx:03"]}},
    ]


@pytest.mark.parametrize(
    ("id_", "named"),
    [
        ("tx:12", ("tx", 12)),
        ("a:b:0", ("a:b", 0)),
        ("tx:", None),
        ("tx", None),
        ("tx:007", None),
        ("tx:-1", None),
        ("tx:\uff11", None),
    ],
)
def test_message_row_reads_back_only_what_message_id_writes(
    id_: str, named: tuple[str, int] | None
) -> None:
    assert message_row(id_) == named
    if named is not None:
        assert message_id(*named) == id_


async def test_a_query_on_the_fields_of_the_filters_is_refused() -> None:
    # Refused before the store is asked (there is none here): the query would replace the
    # filter and move other messages. A query on ``row`` goes by ``_id`` pieces instead.
    with pytest.raises(ValueError, match="_id"):
        await update_messages(None, ["tx:1"], {"_id": "tx:2"}, {"$set": {"x": 1}})  # type: ignore[arg-type]
