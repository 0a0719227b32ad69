"""Errors, sorted by what the caller must do.

    PlatformError
    ├── RetryableError            try again later; nothing is wrong with the work itself
    │   ├── StoreUnavailable
    │   ├── BrokerUnavailable
    │   └── UpstreamUnavailable   SES, S3, a callback receiver: 5xx, timeouts, throttling
    └── PermanentError            retrying cannot help; record it and move on
        ├── TransitionNotAllowed  a status change the transition table forbids
        ├── TemplateError         a template that does not parse or does not render
        └── InputError            a payload or file that can never be processed

Adapters (the store, NATS, AWS clients) turn library exceptions into these with
``raise ... from e``; nothing above the adapters catches library exceptions.
"""

from __future__ import annotations

__all__ = [
    "BrokerUnavailable",
    "InputError",
    "PermanentError",
    "PlatformError",
    "RetryableError",
    "StoreUnavailable",
    "TemplateError",
    "TransitionNotAllowed",
    "UpstreamUnavailable",
]


class PlatformError(Exception):
    """Root of every error this project raises on purpose."""


class RetryableError(PlatformError):
    """The work is fine; something it needs is not available right now."""


class StoreUnavailable(RetryableError):
    pass


class BrokerUnavailable(RetryableError):
    pass


class UpstreamUnavailable(RetryableError):
    pass


class PermanentError(PlatformError):
    """The work itself is wrong: retrying gives the same answer."""


class TransitionNotAllowed(PermanentError):
    pass


class TemplateError(PermanentError):
    pass


class InputError(PermanentError):
    pass
