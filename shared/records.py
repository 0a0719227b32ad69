"""Loading documents by id, the one read every handler starts with."""

from __future__ import annotations

from shared.documents import Template, Transaction, from_document
from shared.errors import InputError
from shared.store import Store

__all__ = ["load_template", "load_transaction"]


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
