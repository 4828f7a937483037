"""Every metric the alert rules and dashboards query is one the services export:
the names come from the Prometheus registry the services serve, after importing
every metrics module and letting each collector report."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import yaml
from prometheus_client import REGISTRY

from .deploy_support import COMPOSE, docs

# Prometheus's own series, not the services'.
PROMETHEUS_SERIES = {"up"}
METRIC = re.compile(r"\b(marquee_[a-z0-9_]+|up)\b(?!\s*[=~!]|\s*\()")


@dataclass
class _Status:
    term: int = 3
    commit_index: int = 10
    last_applied: int = 10
    serving: bool = True


class _Node:
    """Just what the coordinator's collector reads from a node."""

    def is_open(self) -> bool:
        return True

    def status(self) -> _Status:
        return _Status()

    def local_leases(self) -> list[str]:
        return []


def exported() -> set[str]:
    import marquee_cache.metrics
    import marquee_jobs.metrics
    import marquee_platform.metrics
    from marquee_coordinator import metrics as coordinator_metrics

    assert marquee_cache.metrics
    assert marquee_jobs.metrics
    assert marquee_platform.metrics
    node: Any = _Node()
    coordinator_metrics.NODE.attach(node)
    try:
        families = list(REGISTRY.collect())
    finally:
        coordinator_metrics.NODE.detach(node)
    names: set[str] = set()
    for family in families:
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names |= {family.name + suffix for suffix in ("_bucket", "_sum", "_count")}
        else:
            names.add(family.name)
    return {n for n in names if n.startswith("marquee_")}


def queried(expression: str) -> set[str]:
    # Label names inside {...} are not metrics: drop the selectors first.
    return set(METRIC.findall(re.sub(r"\{[^}]*\}", "{}", expression)))


def alert_expressions() -> list[str]:
    rules: Any = yaml.safe_load((COMPOSE / "observability" / "alerts.yml").read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def dashboard_expressions() -> list[str]:
    expressions: list[str] = []
    for path in (COMPOSE / "observability" / "grafana" / "dashboards").glob("*.json"):
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            expressions.extend(t["expr"] for t in panel["targets"])
    return expressions


def test_exported_names_are_read_from_the_registry() -> None:
    names = exported()
    assert "marquee_coordinator_serving_leader" in names
    assert "marquee_grpc_server_handled_total" in names
    assert "marquee_jobs_queue_depth" in names


def test_alerts_and_dashboards_query_exported_metrics() -> None:
    names = exported() | PROMETHEUS_SERIES
    expressions = alert_expressions() + dashboard_expressions()
    [rule] = [d for d in docs("overlays/prod") if d["kind"] == "PrometheusRule"]
    expressions += [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    used: set[str] = set()
    for expression in expressions:
        found = queried(expression)
        assert found, expression
        unknown = found - names
        assert not unknown, f"{sorted(unknown)} in {expression}"
        used |= found
    # Each of the coordinator's gauges is on its dashboard or in an alert.
    for gauge in ("serving_leader", "raft_term", "raft_commit_index", "leases_held"):
        assert f"marquee_coordinator_{gauge}" in used
