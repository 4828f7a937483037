"""Which port every process of a local suite listens on.

Scheme for `--base-port B` (default 50050), with services numbered in suite
order (cache-gateway 0, auth 1, media 2, search 3, coordinator-1 4, ...):

    gRPC       B + index           50050 cache-gateway ... 50056 coordinator-3
    metrics    B + 100 + index     50150 ... 50156
    raft       B + 200 + node - 1  50250 coordinator-1, 50251, 50252
    Redis      B + 300             50350
    PostgreSQL B + 301             50351
    auth's dev console B + 302     50352 (http://localhost:50352/)
    SeaweedFS S3 B + 303           50353 (`--storage s3` only)
    OIDC provider B + 304          50354 (dev profile, when Node.js is there)

Fixed offsets keep the addresses of a default run predictable (and clear of a
system Redis on 6379 or PostgreSQL on 5432). `--base-port 0` asks the OS for a
free port for everything instead, so parallel runs (tests) never collide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from marquee_localservers import quiet_port

METRICS_OFFSET = 100
RAFT_OFFSET = 200
REDIS_OFFSET = 300
POSTGRES_OFFSET = 301
CONSOLE_OFFSET = 302
S3_OFFSET = 303
OIDC_OFFSET = 304
# The highest offset of the scheme.
TOP_OFFSET = OIDC_OFFSET
# Each block of offsets holds at most this many services.
BLOCK_SIZE = 100
HIGHEST_PORT = 65535


@dataclass(frozen=True)
class ServicePorts:
    grpc: int
    metrics: int
    # Only coordinator nodes talk Raft.
    raft: int | None = None


@dataclass(frozen=True)
class PortPlan:
    redis: int
    postgres: int
    services: dict[str, ServicePorts]
    # Optional backends (SeaweedFS's S3 gateway, the OIDC provider): planned
    # always, used when started. None only in a record written before them.
    s3: int | None = None
    oidc: int | None = None


def check_base_port(base: int) -> None:
    """Raise ValueError unless `base` is 0 or leaves room for the whole scheme."""
    if base == 0:
        return
    if not 1024 <= base <= HIGHEST_PORT - TOP_OFFSET:
        raise ValueError(
            f"base port must be 0 or between 1024 and {HIGHEST_PORT - TOP_OFFSET}, got {base}"
        )


def plan_ports(
    base: int, services: Sequence[tuple[str, int | None]], host: str = "127.0.0.1"
) -> PortPlan:
    """Assign ports to `services`, given in suite order as (name, coordinator node id or None)."""
    check_base_port(base)
    if len(services) > BLOCK_SIZE:
        raise ValueError(f"at most {BLOCK_SIZE} services fit the port scheme")
    if base == 0:
        return _free_ports(services, host)
    return PortPlan(
        redis=base + REDIS_OFFSET,
        postgres=base + POSTGRES_OFFSET,
        s3=base + S3_OFFSET,
        oidc=base + OIDC_OFFSET,
        services={
            name: ServicePorts(
                grpc=base + index,
                metrics=base + METRICS_OFFSET + index,
                raft=None if node_id is None else base + RAFT_OFFSET + node_id - 1,
            )
            for index, (name, node_id) in enumerate(services)
        },
    )


def _free_ports(services: Sequence[tuple[str, int | None]], host: str) -> PortPlan:
    taken: set[int] = set()

    def pick() -> int:
        # Below the ephemeral range (quiet_port): the processes start together
        # and connect to each other, and a port from that range could become
        # the source port of one of those connections before its server binds
        # it. Picks are random, so retry until this plan has no duplicates.
        while (port := quiet_port(host)) in taken:
            pass
        taken.add(port)
        return port

    return PortPlan(
        redis=pick(),
        postgres=pick(),
        s3=pick(),
        oidc=pick(),
        services={
            name: ServicePorts(
                grpc=pick(), metrics=pick(), raft=None if node_id is None else pick()
            )
            for name, node_id in services
        },
    )


def address(host: str, port: int) -> str:
    """host:port, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def console_port(base: int, host: str = "127.0.0.1") -> int:
    """The port of auth's dev console: in the scheme, or a free one for base 0.

    Not recorded in ports.json: nothing on disk depends on it.
    """
    return quiet_port(host) if base == 0 else base + CONSOLE_OFFSET
