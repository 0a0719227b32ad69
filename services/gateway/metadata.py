"""A submission's ``metadata``: the client's own string keys and values, kept and echoed.

The multipart form carries it as a JSON text field, the JSON body as an object; both go
through ``check_metadata``, so both answer a bad one with ``INVALID_METADATA``.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from services.gateway.errors import ApiError, Code

__all__ = ["MAX_KEYS", "MAX_KEY_CHARS", "MAX_VALUE_CHARS", "check_metadata", "parse_metadata"]

FIELD: Final = "metadata"
MAX_KEYS: Final = 50
MAX_KEY_CHARS: Final = 64
MAX_VALUE_CHARS: Final = 512


def _invalid(message: str, **details: Any) -> ApiError:
    return ApiError(Code.INVALID_METADATA, message, details={"field": FIELD, **details})


def parse_metadata(text: str) -> dict[str, str]:
    """The form field: a JSON object as text."""
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError as e:
        raise _invalid(f"metadata is not valid JSON: {e}") from e
    return check_metadata(value)


def check_metadata(value: object) -> dict[str, str]:
    """An object of at most 50 string keys (1-64 characters) to strings (0-512 characters)."""
    if not isinstance(value, dict):
        raise _invalid("metadata must be a JSON object of string keys to string values")
    if len(value) > MAX_KEYS:
        raise _invalid(f"metadata has more than {MAX_KEYS} keys", max_keys=MAX_KEYS)
    checked: dict[str, str] = {}
    for key, item in value.items():
        # Stored as field names: the store gives '.', a leading '$' and NUL a meaning.
        if not 0 < len(key) <= MAX_KEY_CHARS or "." in key or "\0" in key or key[0] == "$":
            raise _invalid(
                f"metadata keys must be 1 to {MAX_KEY_CHARS} characters, "
                "without '.' or a leading '$'",
                key=key[:MAX_KEY_CHARS],
                max_key_chars=MAX_KEY_CHARS,
            )
        if not isinstance(item, str):
            raise _invalid(f"metadata value of {key!r} is not a string", key=key)
        if len(item) > MAX_VALUE_CHARS:
            raise _invalid(
                f"metadata value of {key!r} is longer than {MAX_VALUE_CHARS} characters",
                key=key,
                max_value_chars=MAX_VALUE_CHARS,
            )
        checked[key] = item
    return checked
