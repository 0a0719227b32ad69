"""Every Prometheus metric the services record, in one place (ARCHITECTURE §8).

Each service process registers these in prometheus-client's default registry; names carry
the ``email_`` prefix and units as Prometheus's naming guide asks.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "CALLBACK_TRIES",
    "SCHEDULE_LATENESS",
    "SENDING_PAUSED",
    "SES_BACKOFF_SECONDS",
    "SES_RATE_CEILING",
    "SES_SENDS",
    "SES_THROTTLES",
]

CALLBACK_TRIES = Counter(
    "email_callback_tries_total",
    "Callback tries by result: delivered, failed (will retry), dead, gone (410), skipped.",
    ["result"],
)
SCHEDULE_LATENESS = Histogram(
    "email_schedule_lateness_seconds",
    "How long after its time a schedule slot fired.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 15, 60, 300, 3600),
)
SES_SENDS = Counter(
    "email_ses_sends_total",
    "SES SendEmail calls by result: sent, rejected, throttled, unavailable, paused.",
    ["result"],
)
SES_THROTTLES = Counter(
    "email_ses_throttles_total", "SES answers saying we are over the account's send rate."
)
SES_BACKOFF_SECONDS = Counter(
    "email_ses_backoff_seconds_total",
    "Seconds the sender waited before retrying SES calls (throttling, 5xx, timeouts).",
)
SES_RATE_CEILING = Gauge(
    "email_ses_rate_ceiling_per_second", "The account's max send rate shared by all senders."
)
SENDING_PAUSED = Gauge(
    "email_sending_paused", "1 while SES refuses to send for the whole account (paused)."
)
