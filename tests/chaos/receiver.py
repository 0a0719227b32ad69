"""A callback receiver on a fixed loopback port that can go down and come back: a threaded
HTTP server answering 200 and recording each request's ``webhook-id``."""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from stack.processes import free_port

__all__ = ["CallbackReceiver"]


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, port: int, owner: CallbackReceiver) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", port), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:  # http.server's naming
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        self.server.owner.record(self.headers.get("webhook-id") or "")
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass  # thousands of requests: no access log


class CallbackReceiver:
    def __init__(self) -> None:
        self.port = free_port()
        self._lock = threading.Lock()
        self._received: Counter[str] = Counter()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def record(self, webhook_id: str) -> None:
        with self._lock:
            self._received[webhook_id] += 1

    def received(self) -> Counter[str]:
        """How many times each ``webhook-id`` was answered 200."""
        with self._lock:
            return Counter(self._received)

    def start(self) -> None:
        self._server = _Server(self.port, self)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Down: the port refuses connections until ``start``."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None
