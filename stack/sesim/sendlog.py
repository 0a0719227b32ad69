"""The log of every accepted send: in memory and appended to a JSONL file.

This is what exactly-once tests count: one record per ``SendEmail`` that SES accepted.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import msgspec

__all__ = ["SendLog", "SendRecord"]


class SendRecord(msgspec.Struct, frozen=True, kw_only=True):
    ses_message_id: str
    message_id: str | None  # our ``message_id`` tag, None when the send carried none
    destination: list[str]
    source: str
    subject: str
    timestamp: datetime
    tags: dict[str, str] = {}
    configuration_set: str | None = None
    # Raw content's List-Unsubscribe and List-Unsubscribe-Post (``raw.RECORDED_HEADERS``).
    headers: dict[str, str] = {}


_encoder = msgspec.json.Encoder()


class SendLog:
    def __init__(self, path: Path | None = None) -> None:
        self._records: list[SendRecord] = []
        self._file: BinaryIO | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("ab")

    def append(self, record: SendRecord) -> None:
        self._records.append(record)
        if self._file is not None:
            self._file.write(_encoder.encode(record) + b"\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def records(self, message_id: str | None = None) -> list[SendRecord]:
        if message_id is None:
            return list(self._records)
        return [r for r in self._records if r.message_id == message_id]

    def count_since(self, since: datetime) -> int:
        count = 0
        for record in reversed(self._records):
            if record.timestamp < since:
                break
            count += 1
        return count

    def count_last_day(self, now: datetime) -> int:
        return self.count_since(now - timedelta(days=1))

    def clear(self) -> None:
        self._records.clear()
