"""The whole platform on one machine: the embedded stack plus the five services as processes.

    with Platform(Path("var")) as platform:
        print(platform.gateway_url)

What ``email-platform up`` runs, and what the end-to-end tests start.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import httpx

from stack.launcher import Stack, StackInfo
from stack.processes import ProcessGroup

__all__ = ["SERVICES", "Platform"]

SERVICES = ("gateway", "ingest", "scheduler", "sender", "tracker")


class Platform:
    def __init__(
        self,
        root: Path,
        *,
        gateway_port: int | None = None,
        replicas: Mapping[str, int] | None = None,
        service_env: Mapping[str, str] | None = None,
        running_stack: StackInfo | None = None,
    ) -> None:
        """``running_stack``: run the services on a stack that is already up (tests share
        one); otherwise the platform starts its own and stops it with the services."""
        self.root = root.resolve()
        self.gateway_port = gateway_port or int(os.environ.get("GATEWAY_PORT", "8000"))
        self.stack = (
            None
            if running_stack is not None
            else Stack(
                self.root / "stack",
                gateway_port=self.gateway_port,
                info_path=self.root / "stack.json",
            )
        )
        self.info = running_stack
        self.processes = ProcessGroup(self.root / "services")
        self.replicas = dict.fromkeys(SERVICES, 1) | dict(replicas or {})
        self.service_env = dict(service_env or {})

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def __enter__(self) -> Platform:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> None:
        if self.stack is not None:
            self.info = self.stack.start()
        assert self.info is not None
        try:
            env = {
                **os.environ,
                **self.info.env(),
                "GATEWAY_URL": self.gateway_url,
                "GATEWAY_PORT": str(self.gateway_port),
                "LOG_FORMAT": "json",
                **self.service_env,
            }
            for name in SERVICES:
                for index in range(self.replicas[name]):
                    self.processes.start(
                        self.process_name(name, index),
                        [sys.executable, "-m", f"services.{name}"],
                        env=env,
                    )
            self.processes.wait_ready(self.process_name("gateway", 0), self._gateway_ready, timeout)
        except BaseException:
            self.stop()
            raise

    @staticmethod
    def process_name(service: str, index: int) -> str:
        return service if index == 0 else f"{service}-{index + 1}"

    def stop(self, timeout: float = 15.0) -> None:
        self.processes.stop_all(timeout)
        if self.stack is not None:
            self.stack.stop(timeout)

    def _gateway_ready(self) -> bool:
        try:
            return httpx.get(f"{self.gateway_url}/health/ready", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False
