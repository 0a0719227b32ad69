"""What each SES event does to its message: the outcome rules, in one table.

    Delivery                         SENT | SENDING              -> DELIVERED
    Bounce, Permanent                DELIVERED | SENT | SENDING  -> BOUNCED     + suppressed
    Complaint                        DELIVERED | SENT | SENDING  -> COMPLAINED  + suppressed
    Reject, Rendering Failure        SENT | SENDING              -> FAILED
    Bounce Transient / Undetermined,
    DeliveryDelay, Send, Open, Click,
    and anything not listed          recorded on the message; the status stays

SES events can overtake the sender's own record of a send, hence SENDING among the
candidates. "Suppressed": the event puts the address on the tenant's suppression list
(whatever the message's status: the event alone says the address must not be mailed).

Every outcome is final except DELIVERED, which a complaint or a permanent bounce can follow
(a receiving server may accept a mail and bounce it later; SES then reports both). So the
events one mail can get end in the same status in any order, or twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import msgspec

from services.tracker.ses_event import SesEvent, SesEventKind
from shared.status import MessageStatus as M

__all__ = ["OUTCOME_RULES", "RECORD_ONLY", "Outcome", "outcome_for"]


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """Move a message in one of ``candidates`` to ``status``; no status: only record it."""

    status: M | None = None
    candidates: tuple[M, ...] = ()
    # The suppression list's reason for the address, when the event puts it there.
    suppress: str | None = None

    @property
    def record_only(self) -> bool:
        return self.status is None


RECORD_ONLY: Final = Outcome()

_SENT: Final = (M.SENT, M.SENDING)

# Keyed by (event type, bounce type); the bounce type is None for every other type.
OUTCOME_RULES: Final[Mapping[tuple[str, str | None], Outcome]] = {
    (SesEventKind.DELIVERY, None): Outcome(status=M.DELIVERED, candidates=_SENT),
    (SesEventKind.BOUNCE, "Permanent"): Outcome(
        status=M.BOUNCED, candidates=(*_SENT, M.DELIVERED), suppress="bounced"
    ),
    (SesEventKind.BOUNCE, "Transient"): RECORD_ONLY,
    (SesEventKind.BOUNCE, "Undetermined"): RECORD_ONLY,
    (SesEventKind.COMPLAINT, None): Outcome(
        status=M.COMPLAINED, candidates=(M.DELIVERED, *_SENT), suppress="complained"
    ),
    (SesEventKind.REJECT, None): Outcome(status=M.FAILED, candidates=_SENT),
    (SesEventKind.RENDERING_FAILURE, None): Outcome(status=M.FAILED, candidates=_SENT),
    (SesEventKind.DELIVERY_DELAY, None): RECORD_ONLY,
    (SesEventKind.SEND, None): RECORD_ONLY,
    (SesEventKind.OPEN, None): RECORD_ONLY,
    (SesEventKind.CLICK, None): RECORD_ONLY,
}


def outcome_for(event: SesEvent) -> Outcome:
    bounce_type = event.bounce_type if event.kind == SesEventKind.BOUNCE else None
    return OUTCOME_RULES.get((event.kind, bounce_type), RECORD_ONLY)
