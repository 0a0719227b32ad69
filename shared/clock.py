"""Times as the store keeps them: BSON dates hold milliseconds, so a time we write and
later match by equality (a lease), or answer and read back, is cut to the millisecond
before it is written."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["stored_now", "to_stored"]


def to_stored(at: datetime) -> datetime:
    """``at`` to the millisecond."""
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def stored_now() -> datetime:
    """Now, in UTC, to the millisecond."""
    return to_stored(datetime.now(UTC))
