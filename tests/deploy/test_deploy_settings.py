"""Every variable the manifests, compose and the Dockerfile set is one the service
reads, and with them (secrets as valid stand-ins) each service's settings load:
nothing required is missing, nothing set is malformed."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from marquee_platform import ServiceSettings
from marquee_platform.settings import load_settings

from .deploy_support import (
    COMPOSE,
    DOCKER,
    OVERLAYS,
    SERVICES,
    Doc,
    dockerfile_env,
    docs,
    env_prefix,
    load_module,
    service_of,
    setting_variables,
    settings_classes,
    workloads,
)

ENTRYPOINT = DOCKER / "entrypoint.py"
# Read by the entrypoint, not by a settings class (the test checks it reads them).
ENTRYPOINT_VARIABLES = {
    "COORDINATOR_PEER_DOMAIN",
    "COORDINATOR_INITIAL_MEMBERS",
    "COORDINATOR_RAFT_PORT",
}
# Used by Kubernetes itself to expand $(POD_NAMESPACE) in other values.
EXPANSION_ONLY = {"POD_NAMESPACE"}
# Process-level variables of the image, read by Python or pip.
PROCESS_VARIABLES = {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PIP_NO_INDEX"}

# Valid stand-ins for values that come from Secrets or secret files.
SECRET_STAND_INS = {
    "MARQUEE_COORDINATOR_CLUSTER_SECRET": "x" * 43,
    "MARQUEE_COORDINATOR_ADMIN_TOKEN": "y" * 43,
    "MARQUEE_AUTH_DATABASE_URL": "postgresql://auth:pw@postgres:5432/auth",
    "MARQUEE_AUTH_ENCRYPTION_KEY": "A" * 43 + "=",
    "MARQUEE_MEDIA_S3_ACCESS_KEY": "access",
    "MARQUEE_MEDIA_S3_SECRET_KEY": "secret",
    "MARQUEE_MEDIA_DATABASE_URL": "postgresql://media:pw@postgres:5432/media",
    "MARQUEE_SEARCH_DATABASE_URL": "postgresql://search:pw@postgres:5432/search",
    "MARQUEE_SEARCH_TYPESENSE_API_KEY": "key",
}


def check_names(service: str, env: dict[str, str], where: str) -> None:
    known = setting_variables(settings_classes()[service])
    for name in env:
        if name.startswith("MARQUEE_"):
            assert name in known, f"{where}: {name} is not a setting of {service}"
        else:
            assert name in ENTRYPOINT_VARIABLES | EXPANSION_ONLY | PROCESS_VARIABLES, (
                f"{where}: {name} is read by nothing"
            )


def load(service: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> ServiceSettings:
    """The service's settings as its process would load them from `env`."""
    cls = settings_classes()[service]
    prefix = env_prefix(cls)
    for field_name, field in cls.model_fields.items():
        if field.is_required():
            assert f"{prefix}{field_name}".upper() in env, f"{service}: {field_name} is not set"
    for name in [n for n in os.environ if n.startswith("MARQUEE_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith(prefix):
            monkeypatch.setenv(name, value)
    settings: ServiceSettings = load_settings(cls)
    return settings


def k8s_env(c: Doc, pod_name: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in c.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "secretKeyRef" in item["valueFrom"]:
            env[item["name"]] = SECRET_STAND_INS[item["name"]]
        else:
            env[item["name"]] = "marquee"  # fieldRef: the namespace
    # $(VAR) expansion, as the kubelet does it.
    for name, value in env.items():
        env[name] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), value)
    return env


def test_the_entrypoint_reads_its_variables() -> None:
    source = ENTRYPOINT.read_text()
    for name in ENTRYPOINT_VARIABLES:
        assert f'"{name}"' in source
    for name in set(re.findall(r'"(MARQUEE_COORDINATOR_[A-Z_]+)"', source)):
        assert name in setting_variables(settings_classes()["coordinator"])


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_env_is_read(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = dockerfile_env(service)
    check_names(service, env, f"Dockerfile {service}")
    assert env[f"{env_prefix(settings_classes()[service])}PROFILE"] == "prod"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_manifest_env_is_read_and_loads(overlay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    entrypoint: Any = load_module(ENTRYPOINT)
    for w in workloads(docs(f"overlays/{overlay}")):
        c = w["spec"]["template"]["spec"]["containers"][0]
        service = service_of(c["image"])
        env = k8s_env(c, w["metadata"]["name"])
        check_names(service, env, f"{overlay} {w['kind']}/{w['metadata']['name']}")
        full = dockerfile_env(service) | env
        if service == "coordinator":
            identity: dict[str, str] = entrypoint.coordinator_identity("coordinator-0", full)
            full = identity | full
        settings = load(service, full, monkeypatch)
        assert settings.profile == "prod"
        assert settings.grpc_port == int(
            next(p["containerPort"] for p in c["ports"] if p["name"] == "grpc")
        )
        assert settings.metrics_port == int(
            next(p["containerPort"] for p in c["ports"] if p["name"] == "metrics")
        )


def compose_services() -> dict[str, Any]:
    data: Any = yaml.safe_load((COMPOSE / "compose.yaml").read_text())
    services: dict[str, Any] = data["services"]
    return services


@pytest.mark.parametrize("name", ["cache-gateway", "auth", "media", "search", "coordinator-1"])
def test_compose_env_is_read_and_loads(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose_services()
    overlay: Any = yaml.safe_load((COMPOSE / "compose.observability.yaml").read_text())
    svc = services[name]
    service = service_of(svc["image"].replace("${MARQUEE_IMAGE_PREFIX:-marquee}", "marquee"))
    env = {k: str(v) for k, v in svc.get("environment", {}).items()}
    env |= {k: str(v) for k, v in overlay["services"][name].get("environment", {}).items()}
    # Secret files whose target is a setting's name become that variable.
    for secret in svc.get("secrets", []):
        if isinstance(secret, dict) and secret.get("target", "").startswith("MARQUEE_"):
            env[secret["target"]] = SECRET_STAND_INS[secret["target"]]
    check_names(service, env, f"compose {name}")
    settings = load(service, dockerfile_env(service) | env, monkeypatch)
    assert settings.profile == "prod"


def test_secret_files_become_settings(tmp_path: Path) -> None:
    entrypoint: Any = load_module(ENTRYPOINT)
    (tmp_path / "MARQUEE_AUTH_ENCRYPTION_KEY").write_text("key\n")
    (tmp_path / "MARQUEE_AUTH_DATABASE_URL").write_text("from-file\n")
    (tmp_path / "not-a-setting").write_text("ignored")
    env = {"MARQUEE_AUTH_DATABASE_URL": "from-env"}
    loaded = entrypoint.load_secret_files(env, tmp_path)
    assert loaded == ["MARQUEE_AUTH_ENCRYPTION_KEY"]
    assert env == {"MARQUEE_AUTH_ENCRYPTION_KEY": "key", "MARQUEE_AUTH_DATABASE_URL": "from-env"}


def test_statefulset_identity_and_peers() -> None:
    entrypoint: Any = load_module(ENTRYPOINT)
    env = {"COORDINATOR_PEER_DOMAIN": "peers.ns.svc.cluster.local"}
    first = entrypoint.coordinator_identity("coordinator-0", env)
    assert first == {
        "MARQUEE_COORDINATOR_NODE_ID": "1",
        "MARQUEE_COORDINATOR_RAFT_ADDRESS": "coordinator-0.peers.ns.svc.cluster.local:50250",
        "MARQUEE_COORDINATOR_ADVERTISE_ADDRESS": "coordinator-0.peers.ns.svc.cluster.local:50054",
        "MARQUEE_COORDINATOR_PEERS": "coordinator-1.peers.ns.svc.cluster.local:50250,"
        "coordinator-2.peers.ns.svc.cluster.local:50250",
    }
    # A fourth member, added with MemberAdd before it starts, joins the first three.
    fourth = entrypoint.coordinator_identity("coordinator-3", env)
    assert fourth["MARQUEE_COORDINATOR_NODE_ID"] == "4"
    assert fourth["MARQUEE_COORDINATOR_PEERS"].count(",") == 2
    assert "coordinator-3." not in fourth["MARQUEE_COORDINATOR_PEERS"]
    with pytest.raises(SystemExit):
        entrypoint.coordinator_identity("coordinator", env)
    entrypoint.wait_for_name(socket.gethostname(), 5.0)
