"""A small synchronous client of the gateway's HTTP API, for the CLI and the tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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

    def errors(self, transaction_id: str) -> dict[str, Any]:
        return self._json(self.http.get(f"/transactions/{transaction_id}/errors"))

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
        timeout: float = 300.0,
        interval: float = 0.2,
    ) -> dict[str, Any]:
        """Poll until the transaction is final; ``on_status`` sees each history entry once."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            record = self.transaction(transaction_id)
            history = record["status_history"]
            for entry in history[seen:]:
                if on_status is not None:
                    on_status(entry)
            seen = len(history)
            if record["status"] in FINAL:
                return record
            if time.monotonic() > deadline:
                raise TimeoutError(f"{transaction_id} still {record['status']} after {timeout}s")
            time.sleep(interval)

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        body = response.json() if response.content else {}
        if response.status_code >= 400:
            raise ApiError(response.status_code, body)
        assert isinstance(body, dict)
        return body
