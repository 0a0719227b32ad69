"""A small synchronous client of the gateway's HTTP API, for the CLI and the tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import httpx

__all__ = ["ApiError", "PlatformClient"]

FINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED"})


class ApiError(RuntimeError):
    def __init__(self, status: int, body: Any) -> None:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        super().__init__(f"HTTP {status} {error.get('code', '')}: {error.get('message', body)}")
        self.status = status
        self.body = body


class PlatformClient:
    def __init__(self, base_url: str, *, api_key: str, timeout: float = 30.0) -> None:
        self.http = httpx.Client(
            base_url=f"{base_url.rstrip('/')}/api/v1",
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> PlatformClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def create_template(self, template: dict[str, Any]) -> dict[str, Any]:
        return self._json(self.http.post("/templates", json=template))

    def submit(
        self,
        csv: Path,
        template_id: str,
        *,
        callback_url: str | None = None,
        send_at: str | None = None,
    ) -> dict[str, Any]:
        fields = {"template_id": template_id}
        if callback_url:
            fields["callback_url"] = callback_url
        if send_at:
            fields["send_at"] = send_at
        with csv.open("rb") as upload:
            response = self.http.post(
                "/transactions", data=fields, files={"file": (csv.name, upload, "text/csv")}
            )
        return self._json(response)

    def transaction(self, transaction_id: str) -> dict[str, Any]:
        return self._json(self.http.get(f"/transactions/{transaction_id}"))

    def status(self, transaction_id: str) -> dict[str, Any]:
        return self._json(self.http.get(f"/transactions/{transaction_id}/status"))

    def errors(self, transaction_id: str, cursor: str | None = None) -> dict[str, Any]:
        params = {"cursor": cursor} if cursor else {}
        return self._json(self.http.get(f"/transactions/{transaction_id}/errors", params=params))

    def all_errors(self, transaction_id: str) -> list[dict[str, Any]]:
        """Every row error, following ``next_cursor`` page after page."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page = self.errors(transaction_id, cursor)
            items.extend(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                return items

    def errors_csv(self, transaction_id: str, out: BinaryIO) -> int:
        """Stream the row-errors CSV into ``out``; the bytes written."""
        written = 0
        with self.http.stream("GET", f"/transactions/{transaction_id}/errors.csv") as response:
            if response.status_code >= 400:
                response.read()
                self._json(response)
            for chunk in response.iter_bytes():
                out.write(chunk)
                written += len(chunk)
        return written

    def alerts(self) -> dict[str, Any]:
        return self._json(self.http.get("/alerts"))

    def dead_letters(self, kind: str | None = None, cursor: str | None = None) -> dict[str, Any]:
        params = {k: v for k, v in (("kind", kind), ("cursor", cursor)) if v}
        return self._json(self.http.get("/admin/dead-letters", params=params))

    def dead_letter(self, letter_id: str) -> dict[str, Any]:
        return self._json(self.http.get(f"/admin/dead-letters/{letter_id}"))

    def retry_dead_letter(self, letter_id: str) -> dict[str, Any]:
        return self._json(self.http.post(f"/admin/dead-letters/{letter_id}/retry"))

    def discard_dead_letter(self, letter_id: str) -> dict[str, Any]:
        return self._json(self.http.post(f"/admin/dead-letters/{letter_id}/discard"))

    def cancel(self, transaction_id: str) -> dict[str, Any]:
        return self._json(self.http.post(f"/transactions/{transaction_id}/cancel"))

    def reschedule(self, transaction_id: str, send_at: str) -> dict[str, Any]:
        return self._json(
            self.http.post(f"/transactions/{transaction_id}/reschedule", json={"send_at": send_at})
        )

    def wait(
        self,
        transaction_id: str,
        *,
        on_status: Callable[[dict[str, Any]], None] | None = None,
        on_record: Callable[[dict[str, Any]], None] | None = None,
        timeout: float | None = 300.0,
        interval: float = 0.2,
    ) -> dict[str, Any]:
        """Poll until the transaction is final (``timeout`` None: however long it takes);
        ``on_status`` sees each history entry once, ``on_record`` every record polled."""
        deadline = None if timeout is None else time.monotonic() + timeout
        seen = 0
        while True:
            record = self.transaction(transaction_id)
            history = record["status_history"]
            for entry in history[seen:]:
                if on_status is not None:
                    on_status(entry)
            seen = len(history)
            if on_record is not None:
                on_record(record)
            if record["status"] in FINAL:
                return record
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{transaction_id} still {record['status']} after {timeout}s")
            time.sleep(interval)

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json() if response.content else {}
        except ValueError:
            # Not JSON (a proxy's error page): keep the text for the message.
            body = response.text
        if response.status_code >= 400:
            raise ApiError(response.status_code, body)
        assert isinstance(body, dict)
        return body
