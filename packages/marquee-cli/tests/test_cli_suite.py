from __future__ import annotations

import json
import os
import stat
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pytest
from pydantic_settings import BaseSettings

from marquee_auth.settings import AuthSettings
from marquee_cli import local_oidc
from marquee_cli.cluster_secret import load_or_create_secret
from marquee_cli.port_record import plan_for_data_dir, ports_path
from marquee_cli.ports import console_port, plan_ports
from marquee_cli.suite import S3Target, SuiteContext, service_env, service_needs, suite_services
from marquee_media.settings import MediaSettings

SettingsT = TypeVar("SettingsT", bound=BaseSettings)

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


def test_each_service_waits_only_for_the_backends_it_connects_to() -> None:
    needs = {name: service_needs(spec) for name, spec in SPECS.items()}
    assert needs["coordinator-1"] == frozenset()
    assert needs["cache-gateway"] == {"redis"}
    assert needs["auth"] == {"redis", "postgres"}
    assert needs["media"] == {"postgres"}
    assert service_needs(SPECS["media"], "s3") == {"postgres", "seaweedfs"}


def test_media_with_s3_gets_settings_media_accepts(tmp_path: Path) -> None:
    target = S3Target("http://127.0.0.1:50353", "marquee", "k3y", "us-east-1")
    ctx = replace(context(tmp_path), s3=target)
    env = service_env(SPECS["media"], ctx, inherited={})
    settings = settings_from(MediaSettings, env)
    assert settings.storage == "s3"
    assert settings.s3_endpoint == "http://127.0.0.1:50353"
    assert (settings.s3_access_key, settings.s3_region) == ("marquee", "us-east-1")
    assert settings.s3_secret_key is not None
    assert settings.s3_secret_key.get_secret_value() == "k3y"
    local = settings_from(MediaSettings, service_env(SPECS["media"], context(tmp_path), {}))
    assert local.storage == "local"


def test_auth_gets_the_local_provider_in_settings_auth_accepts(tmp_path: Path) -> None:
    provider = local_oidc.provider_server(tmp_path / "oidc", 50354, 50352)
    ctx = replace(context(tmp_path), oidc_providers=local_oidc.auth_providers(provider))
    settings = settings_from(AuthSettings, service_env(SPECS["auth"], ctx, inherited={}))
    config = settings.oidc_providers[local_oidc.PROVIDER_NAME]
    assert config.discovery_url == "http://127.0.0.1:50354/.well-known/openid-configuration"
    assert config.redirect_uris == [
        "http://localhost:50352/oidc/callback",
        "http://127.0.0.1:50352/oidc/callback",
    ]
    assert config.secret() == (tmp_path / "oidc" / "client-secret").read_text().strip()
    assert config.on_first_login == "create"
    # Without a provider, auth is told none.
    assert "MARQUEE_AUTH_OIDC_PROVIDERS" not in service_env(SPECS["auth"], context(tmp_path), {})


def settings_from(kind: type[SettingsT], env: dict[str, str]) -> SettingsT:
    """The service's own settings class, reading exactly the child's environment."""
    with pytest.MonkeyPatch.context() as patch:
        for key in [k for k in os.environ if k.startswith("MARQUEE_")]:
            patch.delenv(key)
        for key, value in env.items():
            patch.setenv(key, value)
        return kind()


def test_s3_and_oidc_ports_follow_the_scheme_and_are_recorded(tmp_path: Path) -> None:
    services = [(s.name, s.node_id) for s in SPECS.values()]
    plan = plan_ports(50050, services)
    assert (plan.s3, plan.oidc) == (50353, 50354)
    free = plan_ports(0, services)
    every = [free.redis, free.postgres, free.s3, free.oidc]
    every += [p for s in free.services.values() for p in (s.grpc, s.metrics, s.raft) if p]
    assert len(set(every)) == len(every)

    first = plan_for_data_dir(tmp_path, 0, services, "127.0.0.1", warn=print)
    again = plan_for_data_dir(tmp_path, 0, services, "127.0.0.1", warn=print)
    assert (again.s3, again.oidc) == (first.s3, first.oidc)


def test_a_record_from_before_s3_and_oidc_gets_ports_for_them(tmp_path: Path) -> None:
    services = [(s.name, s.node_id) for s in SPECS.values()]
    plan = plan_for_data_dir(tmp_path, 0, services, "127.0.0.1", warn=print)
    record = json.loads(ports_path(tmp_path).read_text())
    del record["s3"], record["oidc"]
    ports_path(tmp_path).write_text(json.dumps(record))

    again = plan_for_data_dir(tmp_path, 0, services, "127.0.0.1", warn=print)

    assert again.services == plan.services
    assert again.s3 is not None
    assert again.oidc is not None
    assert json.loads(ports_path(tmp_path).read_text())["oidc"] == again.oidc


def test_a_dev_suite_names_its_admin_and_a_developer_may_name_another(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    assert service_env(SPECS["auth"], ctx, {})["MARQUEE_AUTH_ADMIN_USERNAMES"] == "admin"
    mine = {"MARQUEE_AUTH_ADMIN_USERNAMES": "ops"}
    assert service_env(SPECS["auth"], ctx, mine)["MARQUEE_AUTH_ADMIN_USERNAMES"] == "ops"
    prod = {"MARQUEE_AUTH_PROFILE": "prod"}
    assert "MARQUEE_AUTH_ADMIN_USERNAMES" not in service_env(SPECS["auth"], ctx, prod)
