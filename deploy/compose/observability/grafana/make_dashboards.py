"""Writes dashboards/<service>.json, one Grafana dashboard per service.

    python deploy/compose/observability/grafana/make_dashboards.py

The JSON files are committed; tests/deploy checks they are what this writes and
that every metric they query is one the services export. Prometheus job names
are the service names (compose: observability/prometheus.yml; Kubernetes: the
ServiceMonitors' jobLabel).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

Panel = tuple[str, str, list[tuple[str, str]]]  # title, unit, [(expr, legend)]


def grpc_panels(job: str) -> list[Panel]:
    sel = f'job="{job}"'
    return [
        (
            "Calls per second by method",
            "reqps",
            [
                (
                    f"sum by (grpc_method) (rate(marquee_grpc_server_handled_total{{{sel}}}[5m]))",
                    "{{grpc_method}}",
                )
            ],
        ),
        (
            "Calls per second by status code",
            "reqps",
            [
                (
                    f"sum by (grpc_code) (rate(marquee_grpc_server_handled_total{{{sel}}}[5m]))",
                    "{{grpc_code}}",
                )
            ],
        ),
        (
            "Server-side error ratio",
            "percentunit",
            [
                (
                    "sum(rate(marquee_grpc_server_handled_total{"
                    + sel
                    + ', grpc_code=~"INTERNAL|UNKNOWN|UNAVAILABLE|DATA_LOSS|DEADLINE_EXCEEDED"}'
                    + "[5m])) / sum(rate(marquee_grpc_server_handled_total{"
                    + sel
                    + "}[5m]))",
                    "error ratio",
                )
            ],
        ),
        (
            "Latency p50 / p99 by method",
            "s",
            [
                (
                    f"histogram_quantile({q}, sum by (grpc_method, le) "
                    f"(rate(marquee_grpc_server_handling_seconds_bucket{{{sel}}}[5m])))",
                    f"p{int(q * 100)} {{{{grpc_method}}}}",
                )
                for q in (0.5, 0.99)
            ],
        ),
    ]


def jobs_panels(job: str) -> list[Panel]:
    sel = f'job="{job}"'
    return [
        (
            "Job queue depth",
            "short",
            [(f"sum by (queue, state) (marquee_jobs_queue_depth{{{sel}}})", "{{queue}} {{state}}")],
        ),
        (
            "Jobs finished per second",
            "ops",
            [
                (
                    f"sum by (kind, outcome) (rate(marquee_jobs_outcomes_total{{{sel}}}[5m]))",
                    "{{kind}} {{outcome}}",
                ),
                (
                    f"sum by (kind, reason) (rate(marquee_jobs_retries_total{{{sel}}}[5m]))",
                    "retry {{kind}} {{reason}}",
                ),
            ],
        ),
        (
            "Periodic jobs: leases and runs",
            "short",
            [
                (
                    f"sum by (lease) (increase(marquee_jobs_lease_held_total{{{sel}}}[15m]))",
                    "acquired {{lease}}",
                ),
                (
                    f"sum by (lease) (increase(marquee_jobs_lease_lost_total{{{sel}}}[15m]))",
                    "lost {{lease}}",
                ),
                (
                    f"sum by (job, outcome) "
                    f"(increase(marquee_jobs_periodic_runs_total{{{sel}}}[15m]))",
                    "run {{outcome}}",
                ),
            ],
        ),
    ]


def cache_panels(job: str) -> list[Panel]:
    sel = f'job="{job}"'
    return [
        (
            "Hits and misses per layer",
            "ops",
            [
                (f"sum by (layer) (rate(marquee_cache_hits_total{{{sel}}}[5m]))", "hit {{layer}}"),
                (
                    f"sum by (layer) (rate(marquee_cache_misses_total{{{sel}}}[5m]))",
                    "miss {{layer}}",
                ),
            ],
        ),
        (
            "Invalidations and L1 flushes",
            "ops",
            [
                (
                    f"sum by (kind) (rate(marquee_cache_invalidations_total{{{sel}}}[5m]))",
                    "invalidation {{kind}}",
                ),
                (
                    f"sum by (reason) (increase(marquee_cache_l1_flushes_total{{{sel}}}[5m]))",
                    "flush {{reason}}",
                ),
            ],
        ),
        (
            "Breaker transitions",
            "short",
            [
                (
                    f"sum by (state) "
                    f"(increase(marquee_cache_breaker_transitions_total{{{sel}}}[5m]))",
                    "{{state}}",
                )
            ],
        ),
        (
            "Rate-limit decisions",
            "ops",
            [
                (
                    f"sum by (decision, source) "
                    f"(rate(marquee_cache_ratelimit_decisions_total{{{sel}}}[5m]))",
                    "{{decision}} ({{source}})",
                )
            ],
        ),
    ]


def coordinator_panels() -> list[Panel]:
    sel = 'job="coordinator"'
    return [
        (
            "Serving leader (1 per cluster)",
            "short",
            [(f"marquee_coordinator_serving_leader{{{sel}}}", "{{instance}}")],
        ),
        ("Raft term", "short", [(f"marquee_coordinator_raft_term{{{sel}}}", "{{instance}}")]),
        (
            "Commit and applied index",
            "short",
            [
                (f"marquee_coordinator_raft_commit_index{{{sel}}}", "commit {{instance}}"),
                (f"marquee_coordinator_raft_applied_index{{{sel}}}", "applied {{instance}}"),
            ],
        ),
        (
            "Leases held",
            "short",
            [(f"marquee_coordinator_leases_held{{{sel}}}", "{{instance}}")],
        ),
        (
            "Leader changes and elections (15 min)",
            "short",
            [
                (
                    f"increase(marquee_coordinator_leader_changes_total{{{sel}}}[15m])",
                    "leader changes {{instance}}",
                ),
                (
                    f"sum by (outcome) "
                    f"(increase(marquee_coordinator_elections_total{{{sel}}}[15m]))",
                    "elections {{outcome}}",
                ),
            ],
        ),
        (
            "Lease events per second (one member's count)",
            "ops",
            [
                (
                    f"max by (event) (rate(marquee_coordinator_lease_events_total{{{sel}}}[5m]))",
                    "{{event}}",
                )
            ],
        ),
        (
            "Apply latency p50 / p99 (leader)",
            "s",
            [
                (
                    f"histogram_quantile({q}, sum by (le) "
                    f"(rate(marquee_coordinator_apply_latency_seconds_bucket{{{sel}}}[5m])))",
                    f"p{int(q * 100)}",
                )
                for q in (0.5, 0.99)
            ],
        ),
    ]


DASHBOARDS: dict[str, tuple[str, list[Panel]]] = {
    "cache-gateway": (
        "Marquee / cache-gateway",
        grpc_panels("cache-gateway") + cache_panels("cache-gateway"),
    ),
    "coordinator": ("Marquee / coordinator", coordinator_panels() + grpc_panels("coordinator")),
    "auth": (
        "Marquee / auth",
        grpc_panels("auth") + cache_panels("auth")[3:] + jobs_panels("auth"),
    ),
    # Media and search export only the per-RPC series today (they run no jobs
    # yet): add jobs_panels(...) when they do.
    "media": ("Marquee / media", grpc_panels("media")),
    "search": ("Marquee / search", grpc_panels("search")),
}


def dashboard(uid: str, title: str, panels: list[Panel]) -> dict[str, Any]:
    built = []
    for index, (panel_title, unit, targets) in enumerate(panels):
        built.append(
            {
                "id": index + 1,
                "type": "timeseries",
                "title": panel_title,
                "datasource": {"type": "prometheus", "uid": "prometheus"},
                "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": [
                    {
                        "refId": chr(ord("A") + n),
                        "datasource": {"type": "prometheus", "uid": "prometheus"},
                        "expr": expr,
                        "legendFormat": legend,
                    }
                    for n, (expr, legend) in enumerate(targets)
                ],
            }
        )
    return {
        "uid": f"marquee-{uid}",
        "title": title,
        "tags": ["marquee"],
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "panels": built,
    }


def render() -> dict[str, str]:
    """File name -> content."""
    return {
        f"{name}.json": json.dumps(dashboard(name, title, panels), indent=2) + "\n"
        for name, (title, panels) in DASHBOARDS.items()
    }


def main() -> int:
    out = HERE / "dashboards"
    out.mkdir(exist_ok=True)
    for name, content in render().items():
        (out / name).write_text(content)
    print(f"wrote {len(DASHBOARDS)} dashboards to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
