"""Chaos: a campaign of known outcomes on the embedded stack while faults are injected, then
the invariants of exactly-once delivery checked and every message classified as Jepsen's
queue checkers do (``python -m tests.chaos``, ``make chaos``)."""
