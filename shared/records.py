"""Loading documents by id, the one read every handler starts with; keeping dead letters."""

from __future__ import annotations

import msgspec

from shared.documents import DeadLetter, Template, Transaction, from_document, to_document
from shared.errors import InputError
from shared.metrics import DEAD_LETTERS
from shared.store import Store

__all__ = ["keep_dead_letter", "load_template", "load_transaction"]


async def load_transaction(store: Store, transaction_id: str) -> Transaction:
    raw = await store.transactions.find_one({"_id": transaction_id})
    if raw is None:
        raise InputError(f"no transaction {transaction_id}")
    return from_document(raw, Transaction)


async def load_template(store: Store, template_id: str) -> Template:
    raw = await store.templates.find_one({"_id": template_id})
    if raw is None:
        raise InputError(f"no template {template_id}")
    return from_document(raw, Template)


async def keep_dead_letter(store: Store, letter: DeadLetter) -> None:
    """Keyed by its ``_id``: dead-lettering the same work twice keeps the first copy (and
    counts it once). The letter is stamped with its transaction's tenant, whose admins
    review it (services/gateway/review.py): one read, for work that is rare."""
    if letter.tenant is None and letter.transaction_id is not None:
        owner = await store.transactions.find_one({"_id": letter.transaction_id}, {"tenant": 1})
        if owner is not None:
            letter = msgspec.structs.replace(letter, tenant=str(owner["tenant"]))
    result = await store.dead_letters.update_one(
        {"_id": letter.id}, {"$setOnInsert": to_document(letter)}, upsert=True
    )
    if result.upserted_id is not None:
        DEAD_LETTERS.labels(letter.kind).inc()
