"""Shared helpers of the deploy/ tests: rendering, loading, the services' settings."""

from __future__ import annotations

import functools
import importlib.util
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from marquee_platform import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose"
DOCKER = DEPLOY / "docker"
BIN = ROOT / ".venv" / "bin"
OVERLAYS = ("dev", "prod")
# Current Kubernetes releases that kubernetes-validate ships schemas for: the
# oldest the manifests need (the preStop sleep action, native gRPC probes) and
# the newest it knows.
KUBERNETES_VERSIONS = ("1.34.0", "1.37.0")

Doc = dict[str, Any]

# Service name (image marquee/<name>, Prometheus job, compose service) -> its settings.
SERVICES = ("cache-gateway", "coordinator", "auth", "media", "search")


def settings_classes() -> dict[str, type[ServiceSettings]]:
    from marquee_auth.settings import AuthSettings
    from marquee_cache_gateway.settings import CacheSettings
    from marquee_coordinator.settings import CoordinatorSettings
    from marquee_media.settings import MediaSettings
    from marquee_search.settings import SearchSettings

    return {
        "cache-gateway": CacheSettings,
        "coordinator": CoordinatorSettings,
        "auth": AuthSettings,
        "media": MediaSettings,
        "search": SearchSettings,
    }


def env_prefix(cls: type[ServiceSettings]) -> str:
    prefix = cls.model_config.get("env_prefix")
    assert isinstance(prefix, str)
    return prefix


def setting_variables(cls: type[ServiceSettings]) -> set[str]:
    return {f"{env_prefix(cls)}{name}".upper() for name in cls.model_fields}


def run(argv: list[str | Path], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, check=False
    )


@functools.cache
def rendered(directory: str) -> str:
    """`kubectl kustomize` of deploy/k8s/<directory> (offline)."""
    result = run([BIN / "kubectl", "kustomize", K8S / directory])
    assert result.returncode == 0, result.stderr
    return result.stdout


def docs(directory: str) -> list[Doc]:
    return [d for d in yaml.safe_load_all(rendered(directory)) if d]


def workloads(items: list[Doc]) -> list[Doc]:
    """Marquee's Deployments and StatefulSets (backends of components excluded)."""
    return [
        d
        for d in items
        if d["kind"] in ("Deployment", "StatefulSet")
        and d["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "marquee"
    ]


def service_of(image: str) -> str:
    """marquee/<service>:tag -> <service>."""
    name = image.rsplit("/", 1)[-1].split(":")[0]
    assert name in SERVICES, image
    return name


def load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem + "_under_test", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dockerfile_env(service: str) -> dict[str, str]:
    """The ENV of the Dockerfile's final stage for `service` (keys and values)."""
    stage: str | None = None
    env: dict[str, str] = {}
    lines = (DOCKER / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    for line in lines:
        words = line.split()
        if not words:
            continue
        if words[0] == "FROM":
            stage = words[-1] if "AS" in words else None
        elif words[0] == "ENV" and stage in (service, "runtime"):
            for pair in words[1:]:
                key, _, value = pair.partition("=")
                env[key] = value
    return env
