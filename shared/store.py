"""The store: PyMongo's async client, configured for durability (ARCHITECTURE §4, §6).

Writes are ``w="majority", j=True``: on the embedded store (run with --sync-on-commit) and
on a real replica set alike, an acknowledged write survives a kill -9.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, Final, TypeVar

from pymongo import AsyncMongoClient, WriteConcern, monitoring
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, ConnectionFailure, WTimeoutError

from shared.errors import StoreUnavailable
from shared.metrics import STORE_COMMANDS

__all__ = [
    "CLOSE_SECONDS",
    "MAX_IN",
    "Collections",
    "CommandCounter",
    "Store",
    "connect_store",
    "find_in",
    "find_where",
    "in_pieces",
    "insert_new",
    "store_reachable",
    "update_in",
    "update_where",
]

Document = dict[str, Any]

_DUPLICATE_KEY = 11000
# The longest closing waits for the store to end our sessions.
CLOSE_SECONDS = 5.0

# The most values one ``$in`` lists. The embedded store (SecantusDB 0.7) matches ``$in`` by
# going through its list for each document, so a command's cost per document grows with the
# list: reading by 250 ids costs 0.3 ms a document, by 2,000 ids 2.3 ms, and an update
# 1.1 -> 5.2 ms (``python -m bench.store_in`` prints them). Unbounded, a tracker that
# fell behind joined ever larger batches and slowed down the more (100,000 recipients: 30 ms
# a message). MongoDB plans ``$in`` as index bounds; pieces only cost it a few round trips.
MAX_IN: Final = 250


class Collections:
    TRANSACTIONS = "transactions"
    MESSAGES = "messages"
    BATCHES = "batches"
    ROW_ERRORS = "row_errors"
    TEMPLATES = "templates"
    CALLBACKS = "callbacks"
    DEAD_LETTERS = "dead_letters"
    API_KEYS = "api_keys"
    IDEMPOTENCY_KEYS = "idempotency_keys"
    SUPPRESSIONS = "suppressions"
    SLOTS = "slots"
    # One receipt per message SES accepted: written by the sender after the call and by
    # the tracker when SES's Send event arrives, whichever comes first.
    SENDS = "sends"
    # ``_id`` is the tenant: its callback signing secret(s) (shared/webhook_secrets.py).
    WEBHOOK_SECRETS = "webhook_secrets"
    # What people asked for through the API, with who and when (shared.documents.OperatorAction).
    OPERATOR_ACTIONS = "operator_actions"
    # ``_id`` is an alert rule: its current state (shared/alerts.py).
    ALERTS = "alerts"


class CommandCounter(monitoring.CommandListener):
    """Counts the commands this process sends to the store, its round trips, in all and by
    command and collection (``by_kind``, and the ``email_store_commands_total`` metric)."""

    def __init__(self) -> None:
        self.count = 0
        self.by_kind: collections.Counter[str] = collections.Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.count += 1
        target = event.command.get(event.command_name)
        collection = target if isinstance(target, str) else ""
        self.by_kind[f"{event.command_name} {collection}".rstrip()] += 1
        STORE_COMMANDS.labels(event.command_name, collection).inc()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


class Store:
    def __init__(
        self, client: AsyncMongoClient[Document], db_name: str, commands: CommandCounter
    ) -> None:
        self.client = client
        self.commands = commands
        self.db: AsyncDatabase[Document] = client.get_database(
            db_name, write_concern=WriteConcern(w="majority", j=True)
        )

    def collection(self, name: str) -> AsyncCollection[Document]:
        return self.db[name]

    @property
    def transactions(self) -> AsyncCollection[Document]:
        return self.db[Collections.TRANSACTIONS]

    @property
    def messages(self) -> AsyncCollection[Document]:
        return self.db[Collections.MESSAGES]

    @property
    def batches(self) -> AsyncCollection[Document]:
        return self.db[Collections.BATCHES]

    @property
    def row_errors(self) -> AsyncCollection[Document]:
        return self.db[Collections.ROW_ERRORS]

    @property
    def templates(self) -> AsyncCollection[Document]:
        return self.db[Collections.TEMPLATES]

    @property
    def callbacks(self) -> AsyncCollection[Document]:
        return self.db[Collections.CALLBACKS]

    @property
    def dead_letters(self) -> AsyncCollection[Document]:
        return self.db[Collections.DEAD_LETTERS]

    @property
    def api_keys(self) -> AsyncCollection[Document]:
        return self.db[Collections.API_KEYS]

    @property
    def suppressions(self) -> AsyncCollection[Document]:
        return self.db[Collections.SUPPRESSIONS]

    @property
    def sends(self) -> AsyncCollection[Document]:
        return self.db[Collections.SENDS]

    @property
    def idempotency_keys(self) -> AsyncCollection[Document]:
        return self.db[Collections.IDEMPOTENCY_KEYS]

    @property
    def slots(self) -> AsyncCollection[Document]:
        return self.db[Collections.SLOTS]

    @property
    def webhook_secrets(self) -> AsyncCollection[Document]:
        return self.db[Collections.WEBHOOK_SECRETS]

    @property
    def operator_actions(self) -> AsyncCollection[Document]:
        return self.db[Collections.OPERATOR_ACTIONS]

    @property
    def alerts(self) -> AsyncCollection[Document]:
        return self.db[Collections.ALERTS]

    async def close(self) -> None:
        """End the sessions and disconnect; if the store does not answer within
        ``CLOSE_SECONDS``, stop waiting: it ends abandoned sessions itself, and a service
        told to stop must stop even when the store stopped first."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_SECONDS):
                await self.client.close()


@contextlib.contextmanager
def store_reachable(what: str) -> Iterator[None]:
    """A store that cannot be reached, as ``StoreUnavailable`` (retryable; the API's 503)."""
    try:
        yield
    except (ConnectionFailure, WTimeoutError) as e:
        raise StoreUnavailable(f"{what}: {e}") from e


_T = TypeVar("_T")


def in_pieces(values: Sequence[_T]) -> list[Sequence[_T]]:
    """``values`` in pieces of at most ``MAX_IN``, in order."""
    return [values[i : i + MAX_IN] for i in range(0, len(values), MAX_IN)]


async def find_where(
    collection: AsyncCollection[Document],
    filters: Sequence[tuple[Mapping[str, Any], int]],
    query: Mapping[str, Any] | None = None,
    projection: Mapping[str, Any] | None = None,
) -> AsyncIterator[Document]:
    """The documents that one of ``filters`` and ``query`` match, one read per filter.

    Each filter comes with the most documents it can match, and its read asks for them all
    in its first answer: the default (101) would take a getMore for the rest, and one more
    than the most means an answer that has them all needs no empty getMore to say so."""
    for where, most in [(_and(where, query), most) for where, most in filters]:
        async for doc in collection.find(where, projection, batch_size=most + 1):
            yield doc


async def update_where(
    collection: AsyncCollection[Document],
    filters: Sequence[Mapping[str, Any]],
    query: Mapping[str, Any],
    update: Mapping[str, Any],
    *,
    session: AsyncClientSession | None = None,
) -> int:
    """``update_many`` of the documents that one of ``filters`` and ``query`` match, one
    command per filter; returns how many changed."""
    modified = 0
    for where in [_and(where, query) for where in filters]:
        result = await collection.update_many(where, update, session=session)
        modified += result.modified_count
    return modified


def find_in(
    collection: AsyncCollection[Document],
    field: str,
    values: Sequence[Any],
    query: Mapping[str, Any] | None = None,
    projection: Mapping[str, Any] | None = None,
) -> AsyncIterator[Document]:
    """The documents whose ``field`` is one of ``values`` (and that match ``query``), read
    with one ``$in`` per piece of ``values`` (``MAX_IN``)."""
    pieces = [({field: {"$in": list(piece)}}, len(piece)) for piece in in_pieces(values)]
    return find_where(collection, pieces, query, projection)


async def update_in(
    collection: AsyncCollection[Document],
    ids: Sequence[Any],
    query: Mapping[str, Any],
    update: Mapping[str, Any],
    *,
    session: AsyncClientSession | None = None,
) -> int:
    """``update_many`` of the documents whose ``_id`` is one of ``ids`` (and that match
    ``query``), one command per piece of ``ids`` (``MAX_IN``); returns how many changed."""
    pieces = [{"_id": {"$in": list(piece)}} for piece in in_pieces(ids)]
    return await update_where(collection, pieces, query, update, session=session)


def _and(where: Mapping[str, Any], query: Mapping[str, Any] | None) -> dict[str, Any]:
    """``where`` and ``query`` both: a ``query`` on a field of ``where`` would quietly
    replace it, and match documents not asked for."""
    if query and not where.keys().isdisjoint(query):
        raise ValueError(f"a query on {sorted(where.keys() & query.keys())} of a filter on them")
    return {**where, **(query or {})}


async def insert_new(collection: AsyncCollection[Document], documents: list[Document]) -> int:
    """Insert the documents whose ``_id`` is not there yet; returns how many were new.

    For receipts and other write-once records that two writers may both make.
    """
    if not documents:
        return 0
    try:
        result = await collection.insert_many(documents, ordered=False)
    except BulkWriteError as e:
        errors = e.details.get("writeErrors", [])
        if any(error.get("code") != _DUPLICATE_KEY for error in errors):
            raise
        return int(e.details.get("nInserted", 0))
    return len(result.inserted_ids)


async def connect_store(uri: str, db_name: str) -> Store:
    commands = CommandCounter()
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        uri,
        tz_aware=True,
        serverSelectionTimeoutMS=10_000,
        appname="email-platform",
        event_listeners=[commands],
    )
    await client.admin.command("ping")
    return Store(client, db_name, commands)
