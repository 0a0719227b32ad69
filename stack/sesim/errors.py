"""SES errors as the SES v2 REST API answers them: HTTP status, error code, message.

botocore reads the code from the ``x-amzn-ErrorType`` header and the message from the JSON
body, so a ``SesError`` becomes a ``ClientError`` with the same code on the client side.
"""

from __future__ import annotations

__all__ = ["SesError", "bad_request", "internal_failure", "sending_paused", "throttled"]


class SesError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def throttled() -> SesError:
    return SesError(429, "TooManyRequestsException", "Maximum sending rate exceeded.")


def bad_request(message: str) -> SesError:
    return SesError(400, "BadRequestException", message)


def internal_failure(status: int = 500) -> SesError:
    if status == 503:
        return SesError(503, "ServiceUnavailable", "Service is unavailable. Try again later.")
    return SesError(500, "InternalFailure", "The request processing has failed.")


def sending_paused() -> SesError:
    return SesError(
        400, "SendingPausedException", "Email sending is disabled for your entire account."
    )
