"""The SES v2 simulator: ``SendEmail`` and ``GetAccount`` with the mailbox simulator's outcomes.

Run it with ``python -m stack.sesim --port P --sink sqs|nats|none ...``; the launcher does.
"""

from __future__ import annotations

from stack.sesim.app import create_app
from stack.sesim.settings import SimSettings, SinkKind
from stack.sesim.simulator import MESSAGE_ID_TAG, Simulator

__all__ = ["MESSAGE_ID_TAG", "SimSettings", "Simulator", "SinkKind", "create_app"]
