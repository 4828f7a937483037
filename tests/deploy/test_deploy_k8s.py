"""deploy/k8s: every overlay renders offline, passes kubernetes-validate, and has the
properties an operator relies on (probes, drain, resources, quorum, policies, secrets)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from .deploy_support import (
    BIN,
    COMPOSE,
    KUBERNETES_VERSIONS,
    OVERLAYS,
    SERVICES,
    Doc,
    docs,
    rendered,
    run,
    service_of,
    workloads,
)

# Custom resources of the Prometheus Operator: no schema in kubernetes-validate.
CRD_KINDS = {"PodMonitor", "PrometheusRule"}


def container(workload: Doc) -> Doc:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, workload["metadata"]["name"]
    first: Doc = containers[0]
    return first


def env_value(c: Doc, name: str) -> str:
    for item in c.get("env", []):
        if item["name"] == name:
            value: str = item["value"]
            return value
    raise KeyError(name)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("directory", ["base", *(f"overlays/{o}" for o in OVERLAYS)])
def test_renders_and_validates(directory: str, version: str) -> None:
    text = rendered(directory)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rendered.yaml"
        path.write_text(text)
        result = run(
            [BIN / "kubernetes-validate", "--strict", "--quiet", "-k", version, path],
            timeout=90,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    for line in (result.stdout + result.stderr).splitlines():
        assert any(f"kind {kind} " in line for kind in CRD_KINDS), line


def test_a_broken_manifest_fails_validation() -> None:
    """The validator is not a no-op: an unknown field fails under --strict."""
    broken = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"ports": [{"port": 1, "bogus": True}]},
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "broken.yaml"
        path.write_text(yaml.safe_dump(broken))
        result = run(
            [BIN / "kubernetes-validate", "--strict", "--quiet", "-k", KUBERNETES_VERSIONS[0], path]
        )
    assert result.returncode != 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_is_deployed_once(overlay: str) -> None:
    images = sorted(
        service_of(container(w)["image"]) for w in workloads(docs(f"overlays/{overlay}"))
    )
    assert images == sorted(SERVICES)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_is_written_in_a_manifest(overlay: str) -> None:
    items = docs(f"overlays/{overlay}")
    assert not [d for d in items if d["kind"] == "Secret"]
    sensitive = ("SECRET", "TOKEN", "PASSWORD", "ENCRYPTION_KEY", "API_KEY", "DATABASE_URL")
    for w in workloads(items):
        for item in container(w).get("env", []):
            if any(word in item["name"] for word in sensitive) and item["name"].startswith(
                "MARQUEE_"
            ):
                assert "value" not in item, item["name"]
                assert "secretKeyRef" in item["valueFrom"], item["name"]
    refs = {
        item["name"]
        for w in workloads(items)
        for item in container(w).get("env", [])
        if "secretKeyRef" in item.get("valueFrom", {})
    }
    assert {"MARQUEE_COORDINATOR_CLUSTER_SECRET", "MARQUEE_AUTH_ENCRYPTION_KEY"} <= refs


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_drain_resources_and_security(overlay: str) -> None:
    for w in workloads(docs(f"overlays/{overlay}")):
        name = w["metadata"]["name"]
        pod = w["spec"]["template"]["spec"]
        c = container(w)
        grpc_port = next(p["containerPort"] for p in c["ports"] if p["name"] == "grpc")
        assert c["readinessProbe"]["grpc"]["port"] == grpc_port, name
        if name == "coordinator":
            # Its gRPC health is NOT_SERVING without a leader: liveness asks the port.
            assert c["livenessProbe"]["tcpSocket"]["port"] == "grpc"
        else:
            assert c["livenessProbe"]["grpc"]["port"] == grpc_port, name
        # preStop, then the drain, then a margin, all within the grace period.
        pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        prefix = next(
            i["name"].removesuffix("SHUTDOWN_GRACE_SECONDS")
            for i in c["env"]
            if i["name"].endswith("_SHUTDOWN_GRACE_SECONDS")
        )
        drain = float(env_value(c, prefix + "SHUTDOWN_GRACE_SECONDS"))
        handover = 2.0 if name == "coordinator" else 0.0
        assert pod["terminationGracePeriodSeconds"] >= pre_stop + handover + drain + 2, name
        resources = c["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), name
        assert "memory" in resources["limits"], name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        assert pod["automountServiceAccountToken"] is False, name
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False, name
        assert sc["readOnlyRootFilesystem"] is True, name
        assert sc["capabilities"]["drop"] == ["ALL"], name


def quorum(members: int) -> int:
    return members // 2 + 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_coordinator_statefulset_keeps_quorum(overlay: str) -> None:
    items = docs(f"overlays/{overlay}")
    [sts] = [
        d for d in items if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "coordinator"
    ]
    spec = sts["spec"]
    replicas = spec["replicas"]
    assert replicas >= 3
    assert replicas % 2 == 1
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    [headless] = [
        d for d in items if d["kind"] == "Service" and d["metadata"]["name"] == spec["serviceName"]
    ]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    [pdb] = [
        d
        for d in items
        if d["kind"] == "PodDisruptionBudget"
        and d["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]
    ]
    # Left standing during any voluntary disruption, for this size and for 5 members.
    for members in (replicas, 5):
        if "minAvailable" in pdb["spec"]:
            assert pdb["spec"]["minAvailable"] >= quorum(members)
        else:
            assert members - pdb["spec"]["maxUnavailable"] >= quorum(members)
    c = container(sts)
    assert env_value(c, "COORDINATOR_INITIAL_MEMBERS") == str(replicas)


def policy_sources(policy: Doc, port: int) -> list[Doc]:
    sources: list[Doc] = []
    for rule in policy["spec"].get("ingress", []):
        if any(p["port"] == port for p in rule.get("ports", [])):
            sources.extend(rule["from"])
    return sources


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies(overlay: str) -> None:
    items = docs(f"overlays/{overlay}")
    policies = [d for d in items if d["kind"] == "NetworkPolicy"]
    deny = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/part-of": "marquee"}}
    ]
    assert deny
    assert "ingress" not in deny[0]["spec"]
    by_target = {
        p["spec"]["podSelector"]["matchLabels"].get("app.kubernetes.io/name"): p for p in policies
    }
    for w in workloads(items):
        labels = w["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "marquee"
        assert labels["app.kubernetes.io/name"] in by_target, w["metadata"]["name"]

    # Raft only from members; auth's gRPC from media (and labelled clients), not from all.
    def pods(*names: str) -> list[Doc]:
        return [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": n}}} for n in names]

    assert policy_sources(by_target["coordinator"], 50250) == pods("coordinator")
    # Suite members that call another service are the only ones let in, besides
    # labelled clients and (for /metrics) the monitoring namespace.
    leases = ("coordinator", "auth", "media", "search")
    for target, callers in (("coordinator", leases), ("auth", ("media",))):
        port = 50054 if target == "coordinator" else 50051
        named = [
            s
            for s in policy_sources(by_target[target], port)
            if list(s) == ["podSelector"]
            and "app.kubernetes.io/name" in s["podSelector"]["matchLabels"]
        ]
        assert named == pods(*callers), target
    for policy in by_target.values():
        for rule in policy["spec"].get("ingress", []):
            for source in rule["from"]:
                assert source not in ({}, {"podSelector": {}}, {"namespaceSelector": {}}), policy


def test_prod_alert_rules_are_the_compose_rules() -> None:
    [rule] = [d for d in docs("overlays/prod") if d["kind"] == "PrometheusRule"]
    compose_rules: Any = yaml.safe_load((COMPOSE / "observability" / "alerts.yml").read_text())
    assert rule["spec"]["groups"] == compose_rules["groups"]
    alerts = {r["alert"] for g in compose_rules["groups"] for r in g["rules"]}
    for wanted in (
        "MarqueeCoordinatorNoLeader",
        "MarqueeJobLeaseLost",
        "MarqueeCacheTrackingLost",
        "MarqueeJobQueueDeep",
        "MarqueeErrorRatioHigh",
    ):
        assert wanted in alerts


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_references_resolve(overlay: str) -> None:
    """What a manifest names exists: accounts, selected pods, named ports."""
    items = docs(f"overlays/{overlay}")
    pods = [d for d in items if d["kind"] in ("Deployment", "StatefulSet")]
    accounts = {d["metadata"]["name"] for d in items if d["kind"] == "ServiceAccount"}
    for w in workloads(items):
        assert w["spec"]["template"]["spec"]["serviceAccountName"] in accounts
        assert selects(
            w["spec"]["selector"]["matchLabels"], w["spec"]["template"]["metadata"]["labels"]
        )
    for d in items:
        if d["kind"] == "Service":
            chosen = [
                p
                for p in pods
                if selects(d["spec"]["selector"], p["spec"]["template"]["metadata"]["labels"])
            ]
            assert chosen, d["metadata"]["name"]
            names = {
                port["name"]
                for p in chosen
                for c in p["spec"]["template"]["spec"]["containers"]
                for port in c["ports"]
            }
            for port in d["spec"]["ports"]:
                assert port["targetPort"] in names, (d["metadata"]["name"], port)
        if d["kind"] in ("PodDisruptionBudget", "NetworkPolicy"):
            spec = d["spec"]
            selector = (spec.get("selector") or spec["podSelector"])["matchLabels"]
            assert any(
                selects(selector, p["spec"]["template"]["metadata"]["labels"]) for p in pods
            ), (
                d["kind"],
                d["metadata"]["name"],
            )
    for w in workloads(items):
        c = container(w)
        port_names = {p["name"] for p in c["ports"]}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            tcp = c[probe].get("tcpSocket")
            if tcp and isinstance(tcp["port"], str):
                assert tcp["port"] in port_names
