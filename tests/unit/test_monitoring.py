"""The monitoring files in deploy/: the Prometheus alert rules checked and unit-tested by
promtool (Debian's ``prometheus`` package, installed by the Makefile), the Grafana
dashboard's JSON; both reading only metrics that shared/metrics.py defines."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import shared.metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yml"
RULE_TESTS = DEPLOY / "prometheus" / "alerts.test.yml"
DASHBOARD = DEPLOY / "grafana" / "email-platform.json"

# The series names each kind of metric is exposed as.
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
}


def families() -> dict[str, set[str]]:
    """Each family of shared/metrics.py and the series names it can be scraped as."""
    found = {}
    for attr in shared.metrics.__all__:
        family = getattr(shared.metrics, attr).describe()[0]
        found[family.name] = {family.name + suffix for suffix in _SUFFIXES[family.type]}
    return found


def exposed_names() -> set[str]:
    return set().union(*families().values())


def used_names(expr: str) -> set[str]:
    return set(re.findall(r"\bemail_[a-z_]+", expr))


def promtool() -> str:
    """promtool's path; missing: skip, except under CI, where it must be there."""
    path = shutil.which("promtool")
    if path is None:
        message = "promtool is missing: `make test` installs Debian's prometheus package"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.mark.parametrize("command", ["check", "test"])
def test_promtool_accepts_and_passes_the_rules(command: str) -> None:
    target = RULES if command == "check" else RULE_TESTS
    result = subprocess.run(
        [promtool(), command, "rules", str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_rule_has_a_firing_and_a_quiet_test() -> None:
    rules = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    firing: set[str] = set()
    quiet: set[str] = set()
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in test.get("alert_rule_test", []):
            (firing if case["exp_alerts"] else quiet).add(case["alertname"])
    assert rules == firing == quiet


def test_the_rules_read_only_metrics_we_define() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    used = set().union(*(used_names(r["expr"]) for g in groups for r in g["rules"]))
    assert used
    assert used - exposed_names() == set()


def _targets(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for panel in panels:
        found += panel.get("targets", [])
        found += _targets(panel.get("panels", []))
    return found


def test_the_dashboard_is_json_over_metrics_we_define() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "email-platform"
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    used = set().union(*(used_names(t["expr"]) for t in _targets(panels)))
    assert used - exposed_names() == set()
    # Every family has a panel.
    for family, series in families().items():
        assert series & used, f"no panel shows {family}"
