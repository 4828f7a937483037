from __future__ import annotations

import stat
from pathlib import Path

import pytest

from marquee_cli.cluster_secret import load_or_create_secret
from marquee_cli.ports import console_port, plan_ports
from marquee_cli.suite import SuiteContext, service_env, suite_services

SPECS = {spec.name: spec for spec in suite_services(3)}


def context(tmp_path: Path) -> SuiteContext:
    return SuiteContext(
        data_dir=tmp_path,
        host="127.0.0.1",
        ports=plan_ports(50050, [(s.name, s.node_id) for s in SPECS.values()]),
        redis_url="redis://127.0.0.1:50350/0",
        postgres_url="postgresql://marquee@127.0.0.1:50351/marquee",
        cluster_secret="s3cret",
        console_port=console_port(50050),
    )


def test_suite_has_every_service_and_three_nodes() -> None:
    assert list(SPECS) == [
        "cache-gateway",
        "auth",
        "media",
        "search",
        "coordinator-1",
        "coordinator-2",
        "coordinator-3",
    ]
    assert [s.node_id for s in SPECS.values() if s.node_id] == [1, 2, 3]


def test_coordinator_env_names_the_other_nodes(tmp_path: Path) -> None:
    env = service_env(SPECS["coordinator-2"], context(tmp_path), inherited={})
    assert env["MARQUEE_COORDINATOR_NODE_ID"] == "2"
    assert env["MARQUEE_COORDINATOR_RAFT_ADDRESS"] == "127.0.0.1:50251"
    assert env["MARQUEE_COORDINATOR_PEERS"] == "127.0.0.1:50250,127.0.0.1:50252"
    assert env["MARQUEE_COORDINATOR_DATA_DIR"] == str(tmp_path / "coordinator" / "node-2")
    assert env["MARQUEE_COORDINATOR_CLUSTER_SECRET"] == "s3cret"
    assert env["MARQUEE_COORDINATOR_GRPC_PORT"] == "50055"


@pytest.mark.parametrize(
    ("name", "key", "value"),
    [
        ("cache-gateway", "MARQUEE_CACHE_REDIS_URL", "redis://127.0.0.1:50350/0"),
        ("auth", "MARQUEE_AUTH_DATABASE_URL", "postgresql://marquee@127.0.0.1:50351/marquee"),
        (
            "auth",
            "MARQUEE_AUTH_COORDINATOR_ENDPOINTS",
            "127.0.0.1:50054,127.0.0.1:50055,127.0.0.1:50056",
        ),
        # Attempt limits shared through the suite's Redis; the dev console on B + 302,
        # the one web origin allowed to run WebAuthn ceremonies.
        ("auth", "MARQUEE_AUTH_REDIS_URL", "redis://127.0.0.1:50350/0"),
        ("auth", "MARQUEE_AUTH_CONSOLE_PORT", "50352"),
        ("auth", "MARQUEE_AUTH_WEBAUTHN_ORIGINS", "http://localhost:50352"),
        ("media", "MARQUEE_MEDIA_METRICS_PORT", "50152"),
        # Media verifies tokens with the keys auth publishes (GetJwks).
        ("media", "MARQUEE_MEDIA_AUTH_ADDRESS", "127.0.0.1:50051"),
        ("media", "MARQUEE_MEDIA_DATABASE_URL", "postgresql://marquee@127.0.0.1:50351/marquee"),
        (
            "media",
            "MARQUEE_MEDIA_COORDINATOR_ENDPOINTS",
            "127.0.0.1:50054,127.0.0.1:50055,127.0.0.1:50056",
        ),
        ("search", "MARQUEE_SEARCH_GRPC_HOST", "127.0.0.1"),
        # Reindex jobs on the suite's PostgreSQL; the demo catalogue at start.
        ("search", "MARQUEE_SEARCH_DATABASE_URL", "postgresql://marquee@127.0.0.1:50351/marquee"),
        (
            "search",
            "MARQUEE_SEARCH_COORDINATOR_ENDPOINTS",
            "127.0.0.1:50054,127.0.0.1:50055,127.0.0.1:50056",
        ),
        ("search", "MARQUEE_SEARCH_DEMO_CATALOGUE", "true"),
    ],
)
def test_service_settings(tmp_path: Path, name: str, key: str, value: str) -> None:
    assert service_env(SPECS[name], context(tmp_path), inherited={})[key] == value


def test_data_dirs_live_under_the_data_dir(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    assert service_env(SPECS["media"], ctx, {})["MARQUEE_MEDIA_STORAGE_DIR"] == str(
        tmp_path / "media"
    )
    assert service_env(SPECS["search"], ctx, {})["MARQUEE_SEARCH_DATA_DIR"] == str(
        tmp_path / "search"
    )


def test_log_level_is_overridable_but_ports_are_not(tmp_path: Path) -> None:
    inherited = {"MARQUEE_AUTH_LOG_LEVEL": "DEBUG", "MARQUEE_AUTH_GRPC_PORT": "1", "PATH": "/bin"}
    env = service_env(SPECS["auth"], context(tmp_path), inherited)
    assert env["MARQUEE_AUTH_LOG_LEVEL"] == "DEBUG"
    assert env["MARQUEE_AUTH_GRPC_PORT"] == "50051"
    assert env["PATH"] == "/bin"


def test_cluster_secret_is_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "coordinator" / "cluster-secret"
    first = load_or_create_secret(path)
    assert len(first) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    assert load_or_create_secret(path) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
