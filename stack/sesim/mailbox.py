"""The SES mailbox simulator: what happens to a message sent to an address.

``success@``, ``ooto@`` and any address outside the simulator deliver; ``bounce@`` bounces
for good; ``complaint@`` delivers, then the recipient complains; ``suppressionlist@`` bounces
as an address on the account's suppression list. ``bounce+label@`` behaves as ``bounce@``.
"""

from __future__ import annotations

import re
from email.utils import parseaddr
from enum import StrEnum

__all__ = ["SIMULATOR_DOMAIN", "Outcome", "outcome_for"]

SIMULATOR_DOMAIN = "simulator.amazonses.com"


class Outcome(StrEnum):
    DELIVERY = "Delivery"
    BOUNCE = "Bounce"
    COMPLAINT = "Complaint"  # delivered first
    SUPPRESSED = "Suppressed"  # a Bounce, sub-type OnAccountSuppressionList


_SIMULATED: dict[str, Outcome] = {
    "success": Outcome.DELIVERY,
    "ooto": Outcome.DELIVERY,
    "bounce": Outcome.BOUNCE,
    "complaint": Outcome.COMPLAINT,
    "suppressionlist": Outcome.SUPPRESSED,
}


# A bare address (no display name, comment or quoting): ``parseaddr`` would return it as it
# is, so the hot path skips that (slow) parse.
_BARE = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+")


def outcome_for(address: str) -> Outcome:
    """The outcome for one recipient; accepts ``Name <addr>`` forms too."""
    bare = address if _BARE.fullmatch(address) else parseaddr(address)[1] or address
    local, _, domain = bare.strip().lower().rpartition("@")
    if domain != SIMULATOR_DOMAIN:
        return Outcome.DELIVERY
    base = local.split("+", 1)[0]
    return _SIMULATED.get(base, Outcome.DELIVERY)
