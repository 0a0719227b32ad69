"""The embedded stack (ARCHITECTURE §6): NATS, the Mongo-wire store, moto and the SES simulator.

Each server runs as a child process on a free loopback port; ``Stack.start`` returns once every
one of them answers, and writes a ``StackInfo`` to ``stack.json`` for the services, the CLI and
the tests. A server whose URL is already in the environment (``NATS_URL``, ``MONGODB_URI``,
``AWS_ENDPOINT_URL``, ``SES_ENDPOINT_URL``) is used as it is and not started.

    with Stack(Path("var/stack")) as info:
        env = {**os.environ, **info.env()}
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import NamedTuple

import boto3  # type: ignore[import-untyped]  # no stubs installed; two calls, checked below
import httpx
import msgspec
import pymongo

from stack.processes import ProcessGroup, StartupError, free_port
from stack.store_sweeper import StoreSweeper

__all__ = ["Stack", "StackInfo", "read_info"]

_HOST = "127.0.0.1"
_MOTO_ACCOUNT = "123456789012"  # moto's default account: the queue URL is predictable
_TEST_CREDENTIALS = "testing"


class StackInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Where a running stack's servers are; written to ``stack.json``."""

    gateway_url: str
    nats_url: str
    mongodb_uri: str
    aws_endpoint_url: str | None  # None: real AWS
    ses_endpoint_url: str | None  # None: the AWS endpoint
    sim_url: str | None  # the simulator's control base URL (``/_sim/...``); None if not ours
    s3_bucket: str
    sqs_queue_url: str | None
    aws_region: str
    # Only for servers we started (moto): a real endpoint's credentials stay in the caller's
    # environment and never land in a file.
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    nats_monitor_url: str | None = None  # NATS's HTTP monitoring (/varz, /jsz) if we started it
    pids: dict[str, int] = {}

    def env(self) -> dict[str, str]:
        """The environment variables the services read."""
        values = {
            "NATS_URL": self.nats_url,
            "MONGODB_URI": self.mongodb_uri,
            "AWS_ENDPOINT_URL": self.aws_endpoint_url,
            "SES_ENDPOINT_URL": self.ses_endpoint_url or self.aws_endpoint_url,
            "AWS_REGION": self.aws_region,
            "AWS_ACCESS_KEY_ID": self.aws_access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.aws_secret_access_key,
            "S3_BUCKET": self.s3_bucket,
            "SQS_QUEUE_URL": self.sqs_queue_url,
            "GATEWAY_URL": self.gateway_url,
        }
        return {name: value for name, value in values.items() if value is not None}


_info_encoder = msgspec.json.Encoder()
_info_decoder = msgspec.json.Decoder(StackInfo)


def read_info(path: Path) -> StackInfo:
    """The ``StackInfo`` a running stack wrote."""
    return _info_decoder.decode(path.read_bytes())


def _binary(name: str) -> str:
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise StartupError(f"{name} not found beside {sys.executable} nor on PATH")
    return found


def _nats_answers(port: int) -> Callable[[], bool]:
    def check() -> bool:
        # The server sends INFO as soon as it accepts clients; JetStream is up by then.
        with socket.create_connection((_HOST, port), timeout=0.5) as sock:
            return sock.recv(4).startswith(b"INFO")

    return check


def _store_answers(uri: str) -> Callable[[], bool]:
    def check() -> bool:
        client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
            uri, serverSelectionTimeoutMS=300, connectTimeoutMS=300
        )
        try:
            return client.admin.command("ping").get("ok") == 1
        finally:
            client.close()

    return check


def _http_answers(url: str) -> Callable[[], bool]:
    def check() -> bool:
        return httpx.get(url, timeout=0.5).status_code < 500

    return check


class _Launch(NamedTuple):
    """How a server was started (argv, environment, cwd) and how to tell it answers."""

    args: tuple[list[str], dict[str, str] | None, Path]
    ready: Callable[[], bool]


class Stack:
    """Starts the embedded stack's servers; a context manager yielding ``StackInfo``.

    Call ``start`` from a long-lived thread (the children die with the thread that started
    them).
    """

    def __init__(
        self,
        root: Path,
        *,
        gateway_port: int | None = None,
        ses_sink: str = "sqs",
        max_send_rate: float = 50.0,
        ses_event_delay: float | None = None,
        s3_bucket: str = "email-uploads",
        sqs_queue: str = "ses-events",
        aws_region: str = "us-east-1",
        info_path: Path | None = None,
        environ: Mapping[str, str] | None = None,
        start_timeout: float = 30.0,
        store_test_commands: bool = False,
    ) -> None:
        """``store_test_commands``: the store takes ``configureFailPoint`` (the chaos tests'
        slow store); never in a deployment, where any client could arm one."""
        env = os.environ if environ is None else environ
        self.root = root.resolve()
        self.gateway_port = gateway_port or int(env.get("GATEWAY_PORT", "8000"))
        self.ses_sink = ses_sink
        self.max_send_rate = max_send_rate
        self.ses_event_delay = ses_event_delay
        self.s3_bucket = s3_bucket
        self.sqs_queue = sqs_queue
        self.aws_region = aws_region
        self.info_path = (info_path or self.root / "stack.json").resolve()
        self.start_timeout = start_timeout
        self.store_test_commands = store_test_commands
        # How each server we started was started, to start it again as it was (``restart``).
        self._launch_args: dict[str, tuple[list[str], dict[str, str] | None, Path]] = {}
        self._launched: dict[str, _Launch] = {}
        self._given = {
            name: env[name]
            for name in (
                "NATS_URL",
                "MONGODB_URI",
                "AWS_ENDPOINT_URL",
                "SES_ENDPOINT_URL",
                "SQS_QUEUE_URL",
            )
            if env.get(name)
        }
        self.processes = ProcessGroup(self.root)
        self.info: StackInfo | None = None
        self.startup_seconds: dict[str, float] = {}
        self._sweeper: StoreSweeper | None = None

    def __enter__(self) -> StackInfo:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> StackInfo:
        began = time.monotonic()
        try:
            info = self._start()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds["total"] = time.monotonic() - began
        self.info = info
        self.info_path.parent.mkdir(parents=True, exist_ok=True)
        staged = self.info_path.with_suffix(".json.tmp")
        staged.write_bytes(_info_encoder.encode(info))
        staged.replace(self.info_path)
        return info

    def stop(self, timeout: float = 10.0) -> None:
        if self._sweeper is not None:
            self._sweeper.stop()
            self._sweeper = None
        self.processes.stop_all(timeout)
        if self.info is not None:
            self.info_path.unlink(missing_ok=True)
            self.info = None

    def _start(self) -> StackInfo:
        self.root.mkdir(parents=True, exist_ok=True)
        # Spawn everything first, from this thread; then wait for all of them at once.
        waits: dict[str, Callable[[], bool]] = {}
        nats_url = self._given.get("NATS_URL")
        nats_monitor_url: str | None = None
        if nats_url is None:
            nats_url, nats_monitor_url, waits["nats"] = self._start_nats()
        mongodb_uri = self._given.get("MONGODB_URI")
        if mongodb_uri is None:
            mongodb_uri, waits["store"] = self._start_store()

        aws_endpoint = self._given.get("AWS_ENDPOINT_URL")
        ours_aws = aws_endpoint is None
        queue_url = self._given.get("SQS_QUEUE_URL")
        if aws_endpoint is None:
            aws_endpoint, waits["moto"] = self._start_moto()
            queue_url = f"{aws_endpoint}/{_MOTO_ACCOUNT}/{self.sqs_queue}"

        ses_endpoint = self._given.get("SES_ENDPOINT_URL")
        sim_url: str | None = None
        if ses_endpoint is None and ours_aws:
            assert queue_url is not None
            sim_url, waits["sesim"] = self._start_simulator(nats_url, aws_endpoint, queue_url)
            ses_endpoint = sim_url

        for name, check in waits.items():
            self._launched[name] = _Launch(self._launch_args[name], check)
        self._wait_all(waits)
        if "store" in waits:
            self._sweeper = StoreSweeper(mongodb_uri)
            self._sweeper.start()
        if ours_aws:
            created = self._provision(aws_endpoint)
            if created != queue_url:
                raise StartupError(f"moto named the queue {created}, expected {queue_url}")

        return StackInfo(
            gateway_url=f"http://{_HOST}:{self.gateway_port}",
            nats_url=nats_url,
            mongodb_uri=mongodb_uri,
            aws_endpoint_url=aws_endpoint,
            ses_endpoint_url=ses_endpoint,
            sim_url=sim_url,
            s3_bucket=self.s3_bucket,
            sqs_queue_url=queue_url,
            aws_region=self.aws_region,
            aws_access_key_id=_TEST_CREDENTIALS if ours_aws else None,
            aws_secret_access_key=_TEST_CREDENTIALS if ours_aws else None,
            nats_monitor_url=nats_monitor_url,
            pids=self.processes.pids(),
        )

    def restart(self, name: str, *, down_seconds: float = 0.0) -> None:
        """SIGKILL one server we started (``nats``, ``store``, ``moto``, ``sesim``) and start
        it again as it was: same port, same data directory, so what it had made durable is
        there again. Returns once it answers. From the thread that started the stack."""
        self.kill(name)
        if down_seconds > 0:
            time.sleep(down_seconds)
        self.start_again(name)

    def kill(self, name: str) -> None:
        """SIGKILL one server we started; it stays down until ``start_again``."""
        self.processes.kill(name)

    def start_again(self, name: str) -> None:
        """Start a server ``kill`` stopped, as it was; returns once it answers."""
        launch = self._launched[name]
        self._spawn(name, *launch.args)
        self.processes.wait_ready(name, launch.ready, self.start_timeout)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None, cwd: Path) -> None:
        self._launch_args[name] = (argv, env, cwd)
        self.processes.start(name, argv, env=env, cwd=cwd)

    def _wait_all(self, waits: Mapping[str, Callable[[], bool]]) -> None:
        if not waits:
            return
        with ThreadPoolExecutor(max_workers=len(waits), thread_name_prefix="stack-wait") as pool:
            futures = {
                name: pool.submit(self.processes.wait_ready, name, check, self.start_timeout)
                for name, check in waits.items()
            }
            for name, future in futures.items():
                self.startup_seconds[name] = future.result()

    def _start_nats(self) -> tuple[str, str, Callable[[], bool]]:
        port, monitor_port = free_port(), free_port()
        store = self.root / "nats"
        store.mkdir(parents=True, exist_ok=True)
        config = self.root / "nats.conf"
        # sync_interval has no command-line flag: only the config file sets it.
        config.write_text(
            f'listen: "{_HOST}:{port}"\n'
            f'http: "{_HOST}:{monitor_port}"\n'
            f"server_name: embedded\n"
            f"jetstream {{\n"
            f'  store_dir: "{store}"\n'
            f"  sync_interval: always\n"
            f"}}\n"
        )
        self._spawn("nats", [_binary("nats-server"), "-c", str(config)], None, self.root)
        return f"nats://{_HOST}:{port}", f"http://{_HOST}:{monitor_port}", _nats_answers(port)

    def _start_store(self) -> tuple[str, Callable[[], bool]]:
        port = free_port()
        data = self.root / "store"
        data.mkdir(parents=True, exist_ok=True)
        argv = [
            _binary("secantusd-py"),
            "--host",
            _HOST,
            "--port",
            str(port),
            "--storage-path",
            str(data),
            "--sync-on-commit",
            *(["--enable-test-commands"] if self.store_test_commands else []),
        ]
        # cwd = the data dir: the daemon auto-discovers ./secantusd.toml.
        self._spawn("store", argv, None, data)
        uri = f"mongodb://{_HOST}:{port}/?directConnection=true"
        return uri, _store_answers(uri)

    def _aws_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "AWS_ACCESS_KEY_ID": _TEST_CREDENTIALS,
            "AWS_SECRET_ACCESS_KEY": _TEST_CREDENTIALS,
            "AWS_DEFAULT_REGION": self.aws_region,
            "AWS_REGION": self.aws_region,
        }

    def _start_moto(self) -> tuple[str, Callable[[], bool]]:
        port = free_port()
        argv = [_binary("moto_server"), "-H", _HOST, "-p", str(port)]
        self._spawn("moto", argv, self._aws_env(), self.root)
        url = f"http://{_HOST}:{port}"
        return url, _http_answers(f"{url}/moto-api/")

    def _start_simulator(
        self, nats_url: str, aws_endpoint: str, queue_url: str
    ) -> tuple[str, Callable[[], bool]]:
        port = free_port()
        argv = [
            sys.executable,
            "-m",
            "stack.sesim",
            "--port",
            str(port),
            "--sink",
            self.ses_sink,
            "--queue-url",
            queue_url,
            "--nats-url",
            nats_url,
            "--aws-endpoint-url",
            aws_endpoint,
            "--aws-region",
            self.aws_region,
            "--max-send-rate",
            str(self.max_send_rate),
            "--log",
            str(self.root / "sesim" / "sends.jsonl"),
        ]
        if self.ses_event_delay is not None:
            argv += ["--event-delay", str(self.ses_event_delay)]
        self._spawn("sesim", argv, self._aws_env(), self.root)
        url = f"http://{_HOST}:{port}"
        return url, _http_answers(f"{url}/_sim/health")

    def _provision(self, endpoint: str) -> str:
        """Create the bucket and the queue on our moto; the queue's URL."""
        options = {
            "endpoint_url": endpoint,
            "region_name": self.aws_region,
            "aws_access_key_id": _TEST_CREDENTIALS,
            "aws_secret_access_key": _TEST_CREDENTIALS,
        }
        s3 = boto3.client("s3", **options)
        sqs = boto3.client("sqs", **options)
        try:
            s3.create_bucket(Bucket=self.s3_bucket)
            queue_url: str = sqs.create_queue(QueueName=self.sqs_queue)["QueueUrl"]
            return queue_url
        finally:
            s3.close()
            sqs.close()
