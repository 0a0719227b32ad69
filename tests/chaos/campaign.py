"""A campaign whose every row has a known outcome: mailbox simulator addresses (unique per
trial by a ``+tag``, so no earlier trial's suppression touches them) and a few invalid rows."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Final

import msgspec

from stack.sesim.mailbox import SIMULATOR_DOMAIN

__all__ = ["Campaign", "make_campaign"]

# Mailbox -> the message's final status, and its share of the valid rows.
_OUTCOMES: Final = (
    ("success", "DELIVERED", 0.85),
    ("bounce", "BOUNCED", 0.07),
    ("complaint", "COMPLAINED", 0.05),
    ("suppressionlist", "BOUNCED", 0.03),  # a Bounce whose sub-type is the suppression list
)
INVALID_SHARE: Final = 0.01


class Campaign(msgspec.Struct, frozen=True, kw_only=True):
    csv: Path
    expected: dict[str, str]  # valid row's address (lower case) -> its final status
    invalid: int


def make_campaign(path: Path, messages: int, tag: str, rnd: random.Random) -> Campaign:
    """``messages`` rows, ~1 % of them invalid, written to ``path``."""
    lines = ["email,name"]
    expected: dict[str, str] = {}
    invalid = 0
    mailboxes = [m for m, _, _ in _OUTCOMES]
    weights = [w for _, _, w in _OUTCOMES]
    status_of = {m: s for m, s, _ in _OUTCOMES}
    for i in range(messages):
        if rnd.random() < INVALID_SHARE:
            lines.append(f"not-an-address-{tag}-{i},Bad{i}")
            invalid += 1
            continue
        mailbox = rnd.choices(mailboxes, weights)[0]
        address = f"{mailbox}+{tag}-{i}@{SIMULATOR_DOMAIN}"
        lines.append(f"{address},U{i}")
        expected[address] = status_of[mailbox]
    path.write_text("\n".join(lines) + "\n")
    return Campaign(csv=path, expected=expected, invalid=invalid)
