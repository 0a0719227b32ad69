"""Test data for the tracker: transactions, messages and SES events shaped like SES's own."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from shared.documents import (
    Message,
    S3Location,
    SendReceipt,
    StatusEntry,
    Transaction,
    to_document,
)
from shared.status import MessageStatus, TxStatus
from shared.store import Store

PAYLOADS = Path(__file__).resolve().parent / "payloads"

_TX_PATH = (TxStatus.ACCEPT, TxStatus.PROCESSING, TxStatus.READY_TO_SEND, TxStatus.SENT)


@cache
def _payload(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((PAYLOADS / f"{name}.json").read_text())
    return loaded


def payload(name: str) -> dict[str, Any]:
    """A fresh copy of one of the stored SES example payloads."""
    return copy.deepcopy(_payload(name))


def ses_id(transaction_id: str, row: int) -> str:
    return f"ses-{transaction_id}-{row}"


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ses_event(
    kind: str,
    transaction_id: str,
    row: int,
    *,
    at: datetime | None = None,
    bounce_type: str = "Permanent",
) -> dict[str, Any]:
    """A configuration-set event for one of our messages, tagged as the sender tags mail."""
    at = at or datetime.now(UTC)
    templates = {"Delivery": "event_delivery", "Bounce": "event_bounce"}
    templates |= {"Complaint": "event_complaint"}
    if kind in templates:
        event = payload(templates[kind])
    else:
        event = payload("event_delivery")
        del event["delivery"]
        event["eventType"] = kind
        key = {"Send": "send", "Reject": "reject", "DeliveryDelay": "deliveryDelay"}.get(kind)
        if key == "reject":
            event["reject"] = {"reason": "Bad content"}
        elif key == "deliveryDelay":
            event["deliveryDelay"] = {"delayType": "MailboxFull", "timestamp": iso(at)}
        elif key == "send":
            event["send"] = {}
    mail = event["mail"]
    mail["messageId"] = ses_id(transaction_id, row)
    mail["timestamp"] = iso(at - timedelta(seconds=1))
    tags = {k: v for k, v in mail["tags"].items() if k.startswith("ses:")}
    mail["tags"] = tags | {"transaction_id": [transaction_id], "row": [str(row)]}
    detail = {"Delivery": "delivery", "Bounce": "bounce", "Complaint": "complaint"}.get(kind)
    if detail:
        event[detail]["timestamp"] = iso(at)
    if kind == "Bounce":
        event["bounce"]["bounceType"] = bounce_type
    return event


def sent_transaction(
    rows: int,
    *,
    status: TxStatus = TxStatus.SENT,
    callback_url: str | None = None,
    message_status: MessageStatus = MessageStatus.SENT,
) -> tuple[Transaction, list[Message]]:
    """A transaction with ``rows`` messages (rows 2..), its history one minute per step."""
    tx_id = f"tx{uuid.uuid4().hex[:12]}"
    start = datetime.now(UTC) - timedelta(minutes=10)
    path = _TX_PATH[: _TX_PATH.index(status) + 1]
    history = [StatusEntry(status=s, at=start + timedelta(minutes=i)) for i, s in enumerate(path)]
    tx = Transaction(
        id=tx_id,
        tenant="tenant-1",
        status=status,
        template_id="tpl-1",
        source=S3Location(bucket="b", key=f"{tx_id}.csv"),
        callback_url=callback_url,
        counters={"total": rows, "invalid": 0, message_status.lower(): rows},
        status_history=history,
        created_at=start,
        updated_at=history[-1].at,
    )
    messages = [
        Message(
            id=f"{tx_id}:{row}",
            transaction_id=tx_id,
            tenant=tx.tenant,
            batch=0,
            row=row,
            email=f"user{row}@example.com",
            data={},
            status=message_status,
        )
        for row in range(2, rows + 2)
    ]
    return tx, messages


async def insert(store: Store, tx: Transaction, messages: list[Message]) -> None:
    """The transaction and its messages, each with the receipt of its send."""
    await store.transactions.insert_one(to_document(tx))
    if messages:
        await store.messages.insert_many([to_document(m) for m in messages])
        receipts = [
            SendReceipt(
                id=m.id,
                transaction_id=tx.id,
                ses_message_id=ses_id(tx.id, m.row),
                at=tx.created_at,
                source="sender",
            )
            for m in messages
        ]
        await store.sends.insert_many([to_document(r) for r in receipts])
