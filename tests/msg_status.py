"""Reading back the message outcomes announced on ``email.msg.status.<STATUS>``."""

from __future__ import annotations

from shared.broker import Broker
from shared.events import MessageOutcomes, decoder
from shared.topology import Subjects


async def outcome_events(broker: Broker, transaction_id: str) -> list[MessageOutcomes]:
    """Every outcome event of the transaction on the MSG_STATUS stream, in stream order."""
    sub = await broker.js.subscribe(f"{Subjects.MSG_STATUS}.>", ordered_consumer=True)
    found: list[MessageOutcomes] = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=0.5)
            except TimeoutError:
                return found
            event = decoder(MessageOutcomes).decode(msg.data)
            if event.transaction_id == transaction_id:
                assert msg.subject == Subjects.msg_status(event.status)
                found.append(event)
    finally:
        await sub.unsubscribe()


async def announced_rows(broker: Broker, transaction_id: str) -> dict[str, list[int]]:
    """The rows announced per status."""
    rows: dict[str, list[int]] = {}
    for event in await outcome_events(broker, transaction_id):
        rows.setdefault(event.status, []).extend(m.row for m in event.messages)
    return {status: sorted(found) for status, found in rows.items()}
