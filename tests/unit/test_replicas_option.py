"""``email-platform up --replicas``: how many processes of each service, checked before
anything starts (a bad value is a usage error, exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app, parse_replicas
from stack.platform import Platform


def test_replicas_are_parsed() -> None:
    assert parse_replicas("sender=3,ingest=2") == {"sender": 3, "ingest": 2}
    assert parse_replicas(" sender = 2 , ") == {"sender": 2}
    assert parse_replicas(None) == {}


@pytest.mark.parametrize(
    "value",
    ["mailer=2", "sender=0", "sender=-1", "sender=two", "sender", "sender=2,sender=3", "gateway=2"],
)
def test_a_bad_replicas_option_is_a_usage_error(value: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["up", "--no-demo", "--var", str(tmp_path), "--replicas", value]
    )
    assert result.exit_code == 2, result.output
    assert "--replicas" in result.output or "gateway" in result.output
    assert not (tmp_path / "stack").exists()  # nothing started


def test_the_platform_names_each_replica(tmp_path: Path) -> None:
    platform = Platform(tmp_path, replicas={"sender": 3, "ingest": 2})
    names = [
        Platform.process_name(service, i)
        for service, count in platform.replicas.items()
        for i in range(count)
    ]
    assert names == [
        "gateway",
        "ingest",
        "ingest-2",
        "scheduler",
        "sender",
        "sender-2",
        "sender-3",
        "tracker",
    ]
    with pytest.raises(ValueError, match="replicas"):
        Platform(tmp_path, replicas={"sender": 0})
    with pytest.raises(ValueError, match="replicas"):
        Platform(tmp_path, replicas={"mailer": 1})
