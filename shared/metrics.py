"""Every Prometheus metric the services record, in one place (ARCHITECTURE §8).

Each service process registers these in prometheus-client's default registry; names carry
the ``email_`` prefix and units as Prometheus's naming guide asks.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from shared.status import TxStatus

__all__ = [
    "CALLBACK_TRIES",
    "CONSUMER_ACK_PENDING",
    "CONSUMER_PENDING",
    "DEAD_LETTERS",
    "MESSAGES_FAILED",
    "ROWS_INGESTED",
    "SCHEDULE_LATENESS",
    "SENDING_PAUSED",
    "SES_BACKOFF_SECONDS",
    "SES_RATE_CEILING",
    "SES_SENDS",
    "SES_SEND_RATE",
    "SES_THROTTLES",
    "STORE_COMMANDS",
    "TX_IN_STATUS",
    "TX_OLDEST_SECONDS",
    "TX_PROCESSING_SECONDS",
    "TX_STATUS_CHANGES",
    "TX_STATUS_SECONDS",
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
    "SES SendEmail calls by result: sent, rejected, throttled, unavailable, unanswered.",
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
SES_SEND_RATE = Gauge(
    "email_ses_send_rate_per_second",
    "The rate this sender paces its SES calls at: the ceiling less a margin, lowered while "
    "SES throttles (services/sender/pacer.py).",
)

# Transactions. Every change goes through shared/transitions.py ``transition_tx``, which
# counts it and times the status it leaves (from that status's status_history entry).
TX_STATUS_CHANGES = Counter(
    "email_tx_transitions_total", "Transaction status changes, by the status entered.", ["status"]
)
TX_STATUS_SECONDS = Histogram(
    "email_tx_status_seconds",
    "How long transactions stayed in a status, observed when they leave it.",
    ["status"],
    # From a fast ingest to a campaign scheduled days ahead.
    buckets=(
        0.1,
        0.5,
        1,
        5,
        15,
        30,
        60,
        120,
        300,
        600,
        900,
        1800,
        3600,
        7200,
        21600,
        86400,
        259200,
        864000,
    ),
)
# The slow-processing rule's measure (deploy/prometheus/alerts.yml), as the tracker's own rule
# (services/tracker/alerts.py) takes it: from acceptance, or from a scheduled campaign's
# release, to COMPLETED. The rule needs its SLA (alert_sla_seconds) among the buckets.
TX_PROCESSING_SECONDS = Histogram(
    "email_tx_processing_seconds",
    "How long completed transactions took: acceptance (or release, when scheduled) to COMPLETED.",
    buckets=(60, 300, 600, 1800, 3600, 7200, 14400, 28800, 86400, 259200),
)
# Set by the tracker each time it evaluates the alert rules (services/tracker/alerts.py):
# what deploy/prometheus/alerts.yml's "stuck" rule reads, as the tracker's own rule does.
TX_IN_STATUS = Gauge(
    "email_tx_in_status", "Transactions in each non-final status right now.", ["status"]
)
TX_OLDEST_SECONDS = Gauge(
    "email_tx_oldest_in_status_seconds",
    "How long the oldest transaction in each non-final status has been in it (0: none).",
    ["status"],
)

# Counted by shared.store.CommandCounter, which sees every command the process sends.
STORE_COMMANDS = Counter(
    "email_store_commands_total",
    "Commands sent to the store (round trips), by command and collection.",
    ["command", "collection"],
)
ROWS_INGESTED = Counter(
    "email_rows_ingested_total",
    "CSV data rows read by ingest, by result: valid, invalid.",
    ["result"],
)
MESSAGES_FAILED = Counter(
    "email_messages_failed_total",
    "Messages that ended FAILED, by reason: the sender's error code (an SES error code, "
    "TEMPLATE_RENDER_ERROR, INVALID_MIME, RETRIES_EXHAUSTED) or the SES event "
    "(SES_REJECT, SES_RENDERING_FAILURE).",
    ["reason"],
)
DEAD_LETTERS = Counter(
    "email_dead_letters_total",
    "Dead letters written (shared/records.py), by kind: job, message, callback.",
    ["kind"],
)

# JetStream consumer lag, read from the server on each scrape (shared/ops_server.py) for the
# consumers of the scraped service; every replica reports the same numbers: aggregate with max.
CONSUMER_PENDING = Gauge(
    "email_jetstream_consumer_pending",
    "Messages in the stream the durable consumer has not delivered yet.",
    ["consumer"],
)
CONSUMER_ACK_PENDING = Gauge(
    "email_jetstream_consumer_ack_pending",
    "Messages delivered to the durable consumer and not acknowledged yet.",
    ["consumer"],
)

# Every status and result label known in advance, so the series exist (at 0) from the start:
# rate() and the alert rules see the first increment instead of a series appearing at 1.
for _status in TxStatus:
    TX_STATUS_CHANGES.labels(_status)
for _result in ("valid", "invalid"):
    ROWS_INGESTED.labels(_result)
