"""The simulator's settings: one frozen Struct, built once in ``__main__`` from the command line."""

from __future__ import annotations

from enum import StrEnum

import msgspec

__all__ = ["SimSettings", "SinkKind"]


class SinkKind(StrEnum):
    SQS = "sqs"  # SNS-wrapped notifications on an SQS queue, as SES -> SNS -> SQS delivers them
    NATS = "nats"  # straight onto ``email.ses.events`` as ``shared.events.SesEvents``
    NONE = "none"  # only the send log


class SimSettings(msgspec.Struct, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 8025
    sink: SinkKind = SinkKind.NONE
    queue_url: str | None = None
    nats_url: str | None = None
    aws_endpoint_url: str | None = None
    aws_region: str = "us-east-1"
    # SES's own account quota, reported by GetAccount; the rate is enforced, the day is not.
    max_send_rate: float = 50.0
    max_24_hour_send: float = 1_000_000.0
    # Seconds between the Send event and the outcome (Delivery, Bounce, Complaint).
    event_delay: float = 0.05
    # Append-only JSONL of every accepted send; None keeps the log in memory only.
    log_path: str | None = None
    # The SNS topic named in the envelopes of the sqs sink.
    topic_arn: str = "arn:aws:sns:us-east-1:123456789012:ses-events"
    account_id: str = "123456789012"
