"""The whole platform on one machine: the embedded stack plus the five services as processes.

    with Platform(Path("var")) as platform:
        print(platform.gateway_url)

What ``email-platform up`` runs, and what the end-to-end tests start.

Every start makes a fresh admin, live API key of the tenant ``local`` (``platform.api_key``)
and revokes the one the previous start made: only its hash is stored, so a key that was not
written down is lost, and a fresh one costs nothing. A platform that started its own stack
writes the key into ``stack.json`` as ``api_key`` (readable by its owner only), where the
CLI finds it; keys made with ``email-platform keys create`` are left alone.

The gateway and the sender share the secret of the unsubscribe links (``UNSUBSCRIBE_SECRET``)
and the base URL they point at (``PUBLIC_BASE_URL``). Unless the environment sets them, the
platform makes a secret once, keeps it in ``unsubscribe-secret`` under its root (readable by
its owner only; links in mails already sent keep working after a restart), and points the
links at its own gateway.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import httpx
import msgspec

from shared.api_keys import create_key, list_keys, revoke_key
from shared.indexes import ensure_indexes
from shared.settings import ServiceSettings, load_settings
from shared.store import connect_store
from stack.launcher import Stack, StackInfo
from stack.processes import ProcessGroup, free_port

__all__ = ["LOCAL_TENANT", "SERVICES", "Platform", "read_api_key"]

SERVICES = ("gateway", "ingest", "scheduler", "sender", "tracker")
LOCAL_TENANT: Final = "local"
_LOCAL_LABEL: Final = "made by email-platform up"


class _LocalKey(msgspec.Struct, frozen=True):
    api_key: str | None = None


def read_api_key(info_path: Path) -> str | None:
    """The local key a running platform wrote into its ``stack.json``, if any."""
    return msgspec.json.decode(info_path.read_bytes(), type=_LocalKey).api_key


def _record_api_key(info_path: Path, key: str) -> None:
    info: dict[str, Any] = msgspec.json.decode(info_path.read_bytes())
    staged = info_path.with_suffix(".json.tmp")
    staged.unlink(missing_ok=True)
    # Created readable by its owner only: it holds a key.
    with os.fdopen(os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
        f.write(msgspec.json.encode({**info, "api_key": key}))
    staged.replace(info_path)


def _local_secret(path: Path) -> str:
    """The secret kept at ``path``, made the first time."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Created readable by its owner only: it signs unsubscribe links.
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


async def _renew_local_key(settings: ServiceSettings) -> str:
    store = await connect_store(settings.mongodb_uri, settings.mongodb_db)
    try:
        await ensure_indexes(store.db)
        for old in await list_keys(store, LOCAL_TENANT):
            if old.label == _LOCAL_LABEL and old.revoked_at is None:
                await revoke_key(store, old.key_id)
        key, _ = await create_key(store, tenant=LOCAL_TENANT, admin=True, label=_LOCAL_LABEL)
    finally:
        await store.close()
    return key


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
        # Several of each worker service, each with its own OPS_PORT; one gateway, on its port.
        if set(self.replicas) - set(SERVICES) or min(self.replicas.values()) < 1:
            raise ValueError(f"replicas: services {SERVICES}, 1 or more of each: {replicas}")
        if self.replicas["gateway"] != 1:
            raise ValueError("one gateway: it owns GATEWAY_PORT")
        self.service_env = dict(service_env or {})
        self.api_key: str | None = None
        self.env: dict[str, str] = {}
        # The ops endpoint's port of each worker service process (shared/ops_server.py),
        # chosen at its first start and kept across restarts.
        self.ops_ports: dict[str, int] = {}

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def ops_urls(self) -> dict[str, str]:
        """Where each service process serves /metrics and /health/*, by process name."""
        ports = {self.process_name("gateway", 0): self.gateway_port, **self.ops_ports}
        return {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}

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
                **self._unsubscribe_env(),
                **self.service_env,
            }
            self.env = env
            # In a thread of its own: the caller may own an event loop (the tests do).
            with ThreadPoolExecutor(max_workers=1) as pool:
                settings = load_settings(ServiceSettings, env)
                self.api_key = pool.submit(asyncio.run, _renew_local_key(settings)).result()
            if self.stack is not None:
                _record_api_key(self.stack.info_path, self.api_key)
            for name in SERVICES:
                for index in range(self.replicas[name]):
                    self.restart(self.process_name(name, index))
            self.processes.wait_ready(self.process_name("gateway", 0), self._gateway_ready, timeout)
        except BaseException:
            self.stop()
            raise

    def _unsubscribe_env(self) -> dict[str, str]:
        """What the unsubscribe links need, where neither the environment nor
        ``service_env`` says it."""
        given = {**os.environ, **self.service_env}
        env: dict[str, str] = {}
        if not given.get("UNSUBSCRIBE_SECRET"):
            env["UNSUBSCRIBE_SECRET"] = _local_secret(self.root / "unsubscribe-secret")
        if not given.get("PUBLIC_BASE_URL"):
            env["PUBLIC_BASE_URL"] = self.gateway_url
        return env

    def kill(self, name: str) -> None:
        """SIGKILL one service process (``sender``, ``sender-2``...): a crash, nothing drained."""
        os.kill(self.processes.pid(name), signal.SIGKILL)
        self.processes.stop(name, timeout=5)

    def restart(self, name: str) -> None:
        """Start a stopped or killed service process again, as it was started."""
        service = name.rsplit("-", 1)[0] if name[-1].isdigit() else name
        env = self.env
        if service != "gateway":
            port = self.ops_ports.setdefault(name, free_port())
            env = {**env, "OPS_PORT": str(port)}
        self.processes.start(name, [sys.executable, "-m", f"services.{service}"], env=env)

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
