"""What a local suite is made of: the service processes and the settings each one gets.

Pure data, no processes: the launcher turns this into running children.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from marquee_cli.ports import PortPlan, address

# Services drain for this long on SIGTERM; the launcher waits a little longer
# before it SIGKILLs, so a whole `marquee up` stops within a few seconds.
SHUTDOWN_GRACE_SECONDS = 3.0

# Defaults a developer may override from the environment (e.g. MARQUEE_AUTH_LOG_LEVEL=DEBUG).
TUNABLE_DEFAULTS = {"LOG_LEVEL": "INFO", "LOG_FORMAT": "json", "PROFILE": "dev"}
DEV_ADMIN_USERNAME = "admin"


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    role: str
    module: str
    env_prefix: str
    # Fully qualified gRPC services the process serves (health reports each one).
    grpc_services: tuple[str, ...]
    node_id: int | None = None


COORDINATOR_SERVICES = (
    "marquee.coordinator.v1.LeaseService",
    "marquee.coordinator.v1.ElectionService",
    "marquee.coordinator.v1.ClusterService",
)


def suite_services(coordinators: int = 3) -> list[ServiceSpec]:
    """Every service process in start order; coordinators last as their count varies."""
    if coordinators < 1:
        raise ValueError("the suite needs at least one coordinator node")
    singles = [
        ServiceSpec(
            "cache-gateway",
            "service",
            "marquee_cache_gateway",
            "MARQUEE_CACHE_",
            ("marquee.cache.v1.CacheService",),
        ),
        ServiceSpec(
            "auth",
            "service",
            "marquee_auth",
            "MARQUEE_AUTH_",
            ("marquee.auth.v1.AuthService", "marquee.auth.v1.PolicyService"),
        ),
        ServiceSpec(
            "media",
            "service",
            "marquee_media",
            "MARQUEE_MEDIA_",
            ("marquee.media.v1.MediaService",),
        ),
        ServiceSpec(
            "search",
            "service",
            "marquee_search",
            "MARQUEE_SEARCH_",
            ("marquee.search.v1.SearchService",),
        ),
    ]
    nodes = [
        ServiceSpec(
            f"coordinator-{node}",
            "raft node",
            "marquee_coordinator",
            "MARQUEE_COORDINATOR_",
            COORDINATOR_SERVICES,
            node_id=node,
        )
        for node in range(1, coordinators + 1)
    ]
    return singles + nodes


# Backends a service needs answering before it is spawned (their server names);
# coordinator nodes need none, so they start first and import meanwhile.
SERVICE_NEEDS = {
    "marquee_cache_gateway": frozenset({"redis"}),
    "marquee_auth": frozenset({"redis", "postgres"}),
    "marquee_media": frozenset({"postgres"}),
    "marquee_search": frozenset({"postgres"}),
}
STORAGES = ("local", "s3")


def service_needs(spec: ServiceSpec, storage: str = "local") -> frozenset[str]:
    """The backends `spec` connects to as it starts (it exits if one does not answer)."""
    needs = SERVICE_NEEDS.get(spec.module, frozenset())
    if spec.module == "marquee_media" and storage == "s3":
        # Media opens (and creates) its bucket at start.
        needs |= {"seaweedfs"}
    return needs


@dataclass(frozen=True)
class S3Target:
    """Where media keeps its objects with `--storage s3`."""

    endpoint: str
    access_key: str
    secret_key: str
    region: str
    bucket: str = "marquee-media"


@dataclass(frozen=True)
class SuiteContext:
    """Everything a service's settings depend on besides its own spec."""

    data_dir: Path
    host: str
    ports: PortPlan
    redis_url: str
    postgres_url: str
    cluster_secret: str
    # Auth's dev console (http on 127.0.0.1); -1 for none.
    console_port: int = -1
    # None: media keeps objects on local disk under the data dir.
    s3: S3Target | None = None
    # Auth's MARQUEE_AUTH_OIDC_PROVIDERS (a JSON map); None: no OIDC login.
    oidc_providers: str | None = None


def service_env(
    spec: ServiceSpec, ctx: SuiteContext, inherited: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """The child's full environment: inherited, plus its settings under its prefix."""
    ports = ctx.ports.services[spec.name]
    settings = {
        "GRPC_HOST": ctx.host,
        "GRPC_PORT": str(ports.grpc),
        "METRICS_HOST": ctx.host,
        "METRICS_PORT": str(ports.metrics),
        "SHUTDOWN_GRACE_SECONDS": str(SHUTDOWN_GRACE_SECONDS),
        **_specific_settings(spec, ctx),
    }
    env = dict(inherited)
    for key, default in TUNABLE_DEFAULTS.items():
        env.setdefault(spec.env_prefix + key, default)
    env |= {spec.env_prefix + key: value for key, value in settings.items()}
    if spec.module == "marquee_auth" and env.get(spec.env_prefix + "PROFILE") == "dev":
        # Whoever registers this name in a dev suite administers its policy
        # (`marquee auth policy ...`); a developer's own ADMIN_USERNAMES wins.
        env.setdefault(spec.env_prefix + "ADMIN_USERNAMES", DEV_ADMIN_USERNAME)
    # Log lines reach the log file as they happen, not when a buffer fills.
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _specific_settings(spec: ServiceSpec, ctx: SuiteContext) -> dict[str, str]:
    match spec.module:
        case "marquee_cache_gateway":
            return {"REDIS_URL": ctx.redis_url}
        case "marquee_auth":
            # Auth hosts the job queue's `cleanup` job, gated by a coordinator lease,
            # counts attempts in the suite's Redis, and serves the dev console, whose
            # page is the one web origin allowed to run WebAuthn ceremonies.
            settings = {
                "DATABASE_URL": ctx.postgres_url,
                "COORDINATOR_ENDPOINTS": ",".join(_coordinator_endpoints(ctx)),
                "REDIS_URL": ctx.redis_url,
            }
            if ctx.console_port >= 0:
                settings |= {
                    "CONSOLE_PORT": str(ctx.console_port),
                    "WEBAUTHN_ORIGINS": f"http://localhost:{ctx.console_port}",
                }
            if ctx.oidc_providers is not None:
                settings["OIDC_PROVIDERS"] = ctx.oidc_providers
            return settings
        case "marquee_media":
            # Media verifies access tokens with the keys auth publishes (GetJwks), and
            # runs its lease-gated housekeeping job (stale uploads, orphaned transcode
            # directories) on the suite's PostgreSQL.
            auth = ctx.ports.services["auth"]
            settings = {
                # Also with S3: transcode sessions are written under it.
                "STORAGE_DIR": str(ctx.data_dir / "media"),
                "STORAGE": "local" if ctx.s3 is None else "s3",
                "AUTH_ADDRESS": address(ctx.host, auth.grpc),
                "DATABASE_URL": ctx.postgres_url,
                "COORDINATOR_ENDPOINTS": ",".join(_coordinator_endpoints(ctx)),
            }
            if ctx.s3 is not None:
                settings |= {
                    "S3_ENDPOINT": ctx.s3.endpoint,
                    "S3_ACCESS_KEY": ctx.s3.access_key,
                    "S3_SECRET_KEY": ctx.s3.secret_key,
                    "S3_REGION": ctx.s3.region,
                    "S3_BUCKET": ctx.s3.bucket,
                }
            return settings
        case "marquee_search":
            # Embedded engine under the data dir; reindex jobs on the suite's
            # PostgreSQL (auth hosts the queue's cleanup job there); the demo
            # catalogue loaded at start unless its collection exists.
            return {
                "DATA_DIR": str(ctx.data_dir / "search"),
                "DATABASE_URL": ctx.postgres_url,
                "COORDINATOR_ENDPOINTS": ",".join(_coordinator_endpoints(ctx)),
                "DEMO_CATALOGUE": "true",
            }
        case "marquee_coordinator":
            return _coordinator_settings(spec, ctx)
    return {}


def _coordinator_endpoints(ctx: SuiteContext) -> list[str]:
    """The gRPC addresses of every coordinator node (the ones with a Raft port)."""
    return [
        f"{ctx.host}:{ports.grpc}"
        for ports in ctx.ports.services.values()
        if ports.raft is not None
    ]


def _coordinator_settings(spec: ServiceSpec, ctx: SuiteContext) -> dict[str, str]:
    assert spec.node_id is not None
    raft = {
        name: f"{ctx.host}:{ports.raft}"
        for name, ports in ctx.ports.services.items()
        if ports.raft is not None
    }
    return {
        "NODE_ID": str(spec.node_id),
        "RAFT_ADDRESS": raft[spec.name],
        "PEERS": ",".join(address for name, address in raft.items() if name != spec.name),
        "DATA_DIR": str(ctx.data_dir / "coordinator" / f"node-{spec.node_id}"),
        "CLUSTER_SECRET": ctx.cluster_secret,
    }
