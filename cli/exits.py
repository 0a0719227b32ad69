"""The CLI's exit codes: what a script calling it may branch on. One decision, one place.

- 0 done: the command did what it was asked; a followed transaction ended COMPLETED.
- 1 failed: a transaction ended FAILED or CANCELLED; the API refused for a reason that is
  not the input's (401 a bad key, 403, 404 no such id, 409 not in a state for it, 429,
  5xx); the gateway or the store did not answer; a wait timed out.
- 2 usage: the command line was wrong (typer's own check), no API key was found, or the API
  refused the input given (400, 413, 415, 422: a bad ``--send-at``, a template that does
  not parse, a file over its limit).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

from shared.status import TxStatus

__all__ = ["EPILOG", "ExitCode", "for_api_status", "for_transaction"]


class ExitCode(IntEnum):
    DONE = 0
    FAILED = 1
    USAGE = 2


# The statuses with which the API says the input itself was wrong.
_BAD_INPUT: Final = frozenset({400, 413, 415, 422})

EPILOG: Final = (
    "Exit codes: 0 done (a followed transaction COMPLETED); 1 failed (a transaction FAILED "
    "or CANCELLED, the API refused: 401, 403, 404, 409, 429, 5xx, or did not answer); "
    "2 usage (bad options, no API key, or the API refused the input: 400, 413, 415, 422). "
    "--json prints the API's JSON document on stdout (on an API error, its error "
    "document), and messages and progress bars go to stderr."
)


def for_api_status(status: int) -> ExitCode:
    return ExitCode.USAGE if status in _BAD_INPUT else ExitCode.FAILED


def for_transaction(status: str) -> ExitCode:
    """COMPLETED, or still on its way, is done; FAILED and CANCELLED are failures."""
    if status in (TxStatus.FAILED, TxStatus.CANCELLED):
        return ExitCode.FAILED
    return ExitCode.DONE
