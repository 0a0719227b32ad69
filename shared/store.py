"""The store: PyMongo's async client, configured for durability (ARCHITECTURE §4, §6).

Writes are ``w="majority", j=True``: on the embedded store (run with --sync-on-commit) and
on a real replica set alike, an acknowledged write survives a kill -9.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pymongo import AsyncMongoClient, WriteConcern, monitoring
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, ConnectionFailure, WTimeoutError

from shared.errors import StoreUnavailable

__all__ = [
    "Collections",
    "CommandCounter",
    "Store",
    "connect_store",
    "insert_new",
    "store_reachable",
]

Document = dict[str, Any]

_DUPLICATE_KEY = 11000


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
    """Counts the commands this process sends to the store: its round trips."""

    def __init__(self) -> None:
        self.count = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.count += 1

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
        await self.client.close()


@contextmanager
def store_reachable(what: str) -> Iterator[None]:
    """A store that cannot be reached, as ``StoreUnavailable`` (retryable; the API's 503)."""
    try:
        yield
    except (ConnectionFailure, WTimeoutError) as e:
        raise StoreUnavailable(f"{what}: {e}") from e


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
