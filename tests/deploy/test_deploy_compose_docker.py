"""deploy/compose against the vendored compose-spec schema and the issue's shape;
the Dockerfile through hadolint and its per-service contents; no download URL."""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

from .deploy_support import BIN, COMPOSE, DEPLOY, DOCKER, ROOT, SERVICES, load_module, run

SCHEMA = COMPOSE / "schema" / "compose-spec.json"
COMPOSE_FILES = ("compose.yaml", "compose.observability.yaml")
METRICS_PORTS = {"cache-gateway": 50150, "auth": 50151, "media": 50152, "search": 50153}


def compose(name: str = "compose.yaml") -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((COMPOSE / name).read_text())
    return data


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_passes_the_schema(name: str) -> None:
    result = run([BIN / "check-jsonschema", "--schemafile", SCHEMA, COMPOSE / name])
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_says_where_it_comes_from() -> None:
    readme = (COMPOSE / "schema" / "README.md").read_text()
    assert "compose-spec/compose-spec" in readme
    assert re.search(r"\b[0-9a-f]{40}\b", readme)


def test_compose_shape() -> None:
    services = compose()["services"]
    assert "--cluster_mode=emulated" in services["dragonfly"]["command"]
    for backend in ("postgres", "s3", "typesense"):
        assert backend in services
    coordinators = [n for n in services if n.startswith("coordinator-")]
    assert len(coordinators) == 3
    volumes = set()
    for name in coordinators:
        svc = services[name]
        volumes.add(svc["volumes"][0].split(":")[0])
        targets = {s["target"] for s in svc["secrets"]}
        assert "MARQUEE_COORDINATOR_CLUSTER_SECRET" in targets
        assert "healthcheck" in svc
    assert len(volumes) == 3
    assert compose()["secrets"]["cluster_secret"] == {"file": "./secrets/cluster_secret"}
    for name in ("cache-gateway", "auth", "media", "search"):
        svc = services[name]
        assert svc["healthcheck"]["test"][:2] == ["CMD", "python"], name
        assert all("condition" in c for c in svc["depends_on"].values()), name
    assert services["auth"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    init = (COMPOSE / "postgres" / "init-databases.sh").read_text()
    assert "create auth " in init


def test_no_secret_value_in_compose() -> None:
    for name in COMPOSE_FILES:
        for svc_name, svc in compose(name)["services"].items():
            for key, value in (svc.get("environment") or {}).items():
                if re.search(r"SECRET|PASSWORD|TOKEN|API_KEY|ENCRYPTION", key):
                    assert (
                        key.endswith("_FILE")
                        or "/run/secrets/" in str(value)
                        or (str(value).startswith("s3_"))
                    ), f"{svc_name}: {key}"


def test_observability_overlay() -> None:
    overlay = compose("compose.observability.yaml")["services"]
    assert {"otel-collector", "prometheus", "grafana"} <= set(overlay)
    prometheus: Any = yaml.safe_load((COMPOSE / "observability" / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: [t for c in job["static_configs"] for t in c["targets"]]
        for job in prometheus["scrape_configs"]
    }
    for service, port in METRICS_PORTS.items():
        assert targets[service] == [f"{service}:{port}"]
    assert targets["coordinator"] == [f"coordinator-{n}:50154" for n in (1, 2, 3)]
    dashboards = COMPOSE / "observability" / "grafana" / "dashboards"
    assert sorted(p.stem for p in dashboards.glob("*.json")) == sorted(SERVICES)
    maker: Any = load_module(COMPOSE / "observability" / "grafana" / "make_dashboards.py")
    for file_name, content in maker.render().items():
        assert (dashboards / file_name).read_text() == content, (
            f"{file_name}: run make_dashboards.py"
        )


def test_hadolint() -> None:
    result = run([BIN / "hadolint", DOCKER / "Dockerfile"])
    assert result.returncode == 0, result.stdout + result.stderr


def final_stages() -> dict[str, str]:
    text = (DOCKER / "Dockerfile").read_text()
    stages: dict[str, str] = {}
    for block in re.split(r"(?m)^(?=FROM )", text):
        match = re.match(r"FROM \S+ AS (\S+)", block)
        if match:
            stages[match.group(1)] = block
    return stages


def test_an_image_per_service() -> None:
    stages = final_stages()
    for service in SERVICES:
        stage = stages[service]
        assert re.search(r"(?m)^USER 10001:10001$", stage), service
        assert f'"marquee_{service.replace("-", "_")}"' in stage, service
        assert ("ffmpeg" in stage) == (service == "media"), service
        assert f"build-venv.sh {service}" in stages[f"build-{service}"]
    assert "--require-hashes" in (DOCKER / "build-venv.sh").read_text()
    assert "--index-url" not in (DOCKER / "Dockerfile").read_text()


def build_arguments(service: str) -> list[str]:
    """What the Dockerfile's build stage passes to build-venv.sh: the service, extras."""
    stage = final_stages()[f"build-{service}"]
    match = re.search(r"build-venv\.sh (.+)$", stage, re.MULTILINE)
    assert match, service
    return match.group(1).split()


def selected(*names: str) -> dict[str, str]:
    """Package name -> pinned version in the lock's part for `names`."""
    selector: Any = load_module(DOCKER / "select_requirements.py")
    blocks, _ = selector.select(ROOT, list(names))
    pins: dict[str, str] = {}
    for block in blocks:
        name, _, version = block.split()[0].partition("==")
        pins[selector.normalize(name)] = version
    return pins


def imported_modules(folders: list[str]) -> set[str]:
    """Top-level modules the members' sources import (absolute imports, anywhere)."""
    names: set[str] = set()
    for folder in folders:
        for path in (ROOT / folder / "src").rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("service", SERVICES)
def test_each_image_has_what_its_code_imports(service: str) -> None:
    """A module the code imports comes from a package the image installs."""
    service_name, *extras = build_arguments(service)
    assert service_name == service
    selector: Any = load_module(DOCKER / "select_requirements.py")
    pins = selected(f"marquee-{service}", *extras)
    folders = selector.select(ROOT, [f"marquee-{service}"])[1]
    owners = metadata.packages_distributions()
    missing = []
    for module in sorted(imported_modules(folders)):
        if (
            module in sys.stdlib_module_names
            or module.startswith("marquee")
            or module == "__future__"
        ):
            continue
        dists = {selector.normalize(d) for d in owners.get(module, [])}
        if not dists & set(pins):
            missing.append(f"{module} ({', '.join(sorted(dists)) or 'not installed'})")
    assert not missing, f"{service} imports what its image lacks: {missing}"


@pytest.mark.parametrize("service", SERVICES)
def test_each_image_gets_only_its_packages(service: str) -> None:
    pins = selected(f"marquee-{service}")
    only = {
        "tantivy": "search",
        "aioboto3": "media",
        "pysyncobj": "coordinator",
        "argon2-cffi": "auth",
    }
    for package, owner in only.items():
        assert (package in pins) == (service == owner), (service, package)
    for dev_tool in ("pytest", "mypy", "ruff", "hypothesis", "pgserver"):
        assert dev_tool not in pins
    # Closed under dependencies: every requirement of a selected package (for a
    # Linux CPython 3.11) is selected too, as installed here from the same lock.
    selector: Any = load_module(DOCKER / "select_requirements.py")
    env = {
        "sys_platform": "linux",
        "platform_system": "Linux",
        "python_version": "3.11",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "python_full_version": "3.11.7",
        "extra": "",
    }
    for name in pins:
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            requirement = Requirement(text)
            if requirement.marker and not requirement.marker.evaluate(env):
                continue
            assert selector.normalize(requirement.name) in pins, (service, name, text)


def test_no_download_url_is_committed() -> None:
    """Addresses inside the suite (service names) only; the vendored schema is upstream's."""
    url = re.compile(r"\b[a-z][a-z0-9+.-]*://([^/\s\"'@:]+@)?([^/\s\"':]+)")
    for path in DEPLOY.rglob("*"):
        if not path.is_file() or path == SCHEMA or "secrets" in path.parts:
            continue
        for match in url.finditer(path.read_text()):
            host = match.group(2)
            internal = "." not in host or host.endswith(".svc.cluster.local")
            loopback = host.startswith("127.")
            assert internal or loopback, f"{path}: {match.group(0)}"


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_references_resolve(name: str) -> None:
    """depends_on, secrets and named volumes name what the files declare."""
    base = compose()
    data = compose(name)
    services = set(base["services"]) | set(data["services"])
    secrets = set(base.get("secrets", {})) | set(data.get("secrets", {}))
    volumes = set(base.get("volumes", {})) | set(data.get("volumes", {}))
    for svc_name, svc in data["services"].items():
        for dependency in svc.get("depends_on", []):
            assert dependency in services, (svc_name, dependency)
        for secret in svc.get("secrets", []):
            source = secret["source"] if isinstance(secret, dict) else secret
            assert source in secrets, (svc_name, source)
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in volumes, (svc_name, source)
            else:
                assert (COMPOSE / source).exists(), (svc_name, source)
    made = (COMPOSE / "make-secrets.sh").read_text()
    for secret, spec in data.get("secrets", {}).items():
        assert spec["file"] == f"./secrets/{secret}"
        assert f"put {secret} " in made, secret
