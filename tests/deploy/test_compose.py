"""deploy/compose.yaml: valid against the Compose Specification, and the topology the
issue asks for (a 3-node JetStream cluster, a 3-member replica set, the five services with
two senders and two ingests, health checks, the local AWS pieces)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from shared.service import CLOSING_SECONDS
from shared.settings import load_settings
from tests.deploy.compose_file import COMPOSE_FILE, ROOT, resolved, run_compose, service_environment
from tests.deploy.test_settings_coverage import SETTINGS

SERVICES = ("gateway", "ingest", "scheduler", "sender", "tracker")


def test_valid_against_the_compose_specification() -> None:
    result = run_compose(COMPOSE_FILE, "--quiet")
    assert result.returncode == 0, result.stderr


def test_an_invalid_file_is_refused(tmp_path: Path) -> None:
    """The check above is a real schema check: an unknown key fails it."""
    bad = tmp_path / "compose.yaml"
    bad.write_text("services:\n  a:\n    image: busybox:1\n    replica: 2\n")
    result = run_compose(bad, "--quiet")
    assert result.returncode != 0
    assert "additional properties 'replica' not allowed" in result.stderr


def test_the_five_services_from_the_dockerfile() -> None:
    services = resolved()["services"]
    for name in SERVICES:
        build = services[name]["build"]
        assert build["target"] == name
        assert Path(build["dockerfile"]).name == "Dockerfile"
        assert services[name]["stop_signal"] == "SIGTERM"
        depends = services[name]["depends_on"]
        assert {"nats1", "nats2", "nats3", "mongo-init"} <= set(depends)
    assert services["sender"]["deploy"]["replicas"] == 2
    assert services["ingest"]["deploy"]["replicas"] == 2
    for name in ("gateway", "scheduler", "tracker"):
        assert (services[name].get("deploy") or {}).get("replicas", 1) == 1


def test_a_three_node_jetstream_cluster() -> None:
    services = resolved()["services"]
    for i in (1, 2, 3):
        node = services[f"nats{i}"]
        assert "healthcheck" in node
        conf = (ROOT / "deploy" / "nats" / f"nats{i}.conf").read_text()
        assert re.search(r"jetstream\s*\{[^}]*sync_interval:\s*always", conf)
        assert re.search(r"jetstream\s*\{[^}]*store_dir:", conf)
        routes = set(re.findall(r"nats-route://(nats\d):6222", conf))
        assert routes == {"nats1", "nats2", "nats3"}
        assert any(f"nats{i}.conf" in str(v.get("source", "")) for v in node["volumes"])
    for name in SERVICES:
        env = service_environment(name)
        servers = [urlsplit(u).hostname for u in env["NATS_URL"].split(",")]
        assert servers == ["nats1", "nats2", "nats3"]
        assert env["NATS_STREAM_REPLICAS"] == "3"


def test_a_three_member_replica_set_written_by_majority_and_journaled() -> None:
    services = resolved()["services"]
    for i in (1, 2, 3):
        mongo = services[f"mongo{i}"]
        assert "--replSet" in mongo["command"]
        assert "healthcheck" in mongo
    init = " ".join(services["mongo-init"]["command"])
    assert "rs.initiate" in init
    assert all(f"mongo{i}:27017" in init for i in (1, 2, 3))
    for name in SERVICES:
        uri = urlsplit(service_environment(name)["MONGODB_URI"])
        query = parse_qs(uri.query)
        assert query["replicaSet"] == ["rs0"]
        assert query["w"] == ["majority"]
        assert query["journal"] == ["true"]
        assert uri.netloc == "mongo1:27017,mongo2:27017,mongo3:27017"


def test_health_checks_and_the_local_aws_pieces() -> None:
    services = resolved()["services"]
    for name in ("moto", "nats1", "mongo1"):
        assert services[name]["healthcheck"]["test"]
    # The services' and the simulator's checks come from their images (deploy/Dockerfile).
    assert services["sesim"]["build"]["target"] == "sesim"
    assert "--sink" in services["sesim"]["command"]
    for name in SERVICES:
        assert service_environment(name)["AWS_ENDPOINT_URL"] == "http://moto:5000"
    assert service_environment("sender")["SES_ENDPOINT_URL"] == "http://sesim:8025"
    assert service_environment("tracker")["SQS_QUEUE_URL"].startswith("http://moto:5000/")


def _seconds(duration: str) -> float:
    """A compose duration (``60s``, ``1m30s``) in seconds."""
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", duration)
    assert parts is not None, duration
    hours, minutes, seconds = (float(p or 0) for p in parts.groups())
    return hours * 3600 + minutes * 60 + seconds


def test_a_stopping_service_is_done_before_compose_kills_it() -> None:
    """Its grace and the closing of its connections fit in ``stop_grace_period``; past that,
    compose sends SIGKILL (shared/service.py)."""
    for service in SERVICES:
        settings = load_settings(SETTINGS[service], service_environment(service))
        stop_grace = _seconds(resolved()["services"][service]["stop_grace_period"])
        assert settings.shutdown_grace_seconds + CLOSING_SECONDS < stop_grace, service
