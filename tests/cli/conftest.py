"""CLI fixtures: one platform (the five services as processes) on the session's stack, shared
by the package's tests, and the CLI run in-process against it.

The CLI runs under typer's ``CliRunner``: stdout and stderr are captured apart and are not
terminals, so rich draws the progress bars once, as plain lines, when they stop.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from cli.main import app
from stack.launcher import StackInfo
from stack.platform import Platform
from stack.processes import free_port

DB: str = "cli_e2e"


@pytest.fixture(scope="package")
def platform(stack_info: StackInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with Platform(
        tmp_path_factory.mktemp("cli-platform"),
        gateway_port=free_port(),
        running_stack=stack_info,
        service_env={"MONGODB_DB": DB, "SQS_WAIT_SECONDS": "1"},
    ) as running:
        yield running


@dataclass(frozen=True)
class Cli:
    """``email-platform`` against the platform, with its gateway and admin key."""

    platform: Platform

    def __call__(self, *args: str, key: bool = True) -> Result:
        assert self.platform.api_key is not None
        given = ["--gateway", self.platform.gateway_url]
        if key:
            given += ["--api-key", self.platform.api_key]
        return CliRunner().invoke(app, [*args, *given], env={"COLUMNS": "200"})

    def bare(self, *args: str) -> Result:
        """No --gateway nor --api-key (the commands that talk to the store, usage errors)."""
        return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


@pytest.fixture
def cli(platform: Platform) -> Cli:
    return Cli(platform)


@pytest.fixture(scope="session")
def corpus() -> Path:
    return Path(__file__).resolve().parent.parent / "corpus"
