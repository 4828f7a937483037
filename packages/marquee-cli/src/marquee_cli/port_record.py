"""The ports a data directory's suite runs on, kept in <data>/ports.json across restarts.

Why: a coordinator cluster is its members' Raft addresses. pysyncobj writes
them into its full dump (every log compaction, i.e. after five minutes of a
run with any commit) and membership changes (`marquee cluster add/remove`)
write them into the journal; a restarted node takes its voter set from there,
not from its `PEERS`. Started on other ports, the nodes count the old,
unreachable addresses as voters and never elect a leader. So a data dir
whose coordinators have data keeps its Raft addresses: `--base-port 0`
reuses the recorded ports, and a start that would move them is refused
before anything runs.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from marquee_cli.ports import PortPlan, ServicePorts, plan_ports
from marquee_localservers import free_port

PORTS_FILE = "ports.json"
# What a coordinator node leaves on disk once it has run (raft_config.NodeConfig).
RAFT_FILES = ("raft.journal", "raft.dump")
# How long a start waits for recorded ports that are busy: the services' drain
# (suite.SHUTDOWN_GRACE_SECONDS) plus the launcher's margin before SIGKILL, and some.
BUSY_WAIT_SECONDS = 10.0
BUSY_POLL_SECONDS = 0.1


class PortsUnusable(Exception):
    """This start would move a formed coordinator cluster, or its recorded ports are taken."""


def ports_path(data_dir: Path) -> Path:
    return data_dir / PORTS_FILE


def raft_addresses(plan: PortPlan, host: str) -> dict[str, str]:
    """Coordinator name -> Raft address, as the nodes are told (suite._coordinator_settings)."""
    return {name: f"{host}:{ports.raft}" for name, ports in plan.services.items() if ports.raft}


def plan_for_data_dir(
    data_dir: Path,
    base: int,
    services: Sequence[tuple[str, int | None]],
    host: str,
    warn: Callable[[str], None],
    busy_wait: float = BUSY_WAIT_SECONDS,
) -> PortPlan:
    """The ports for this start, recorded in <data>/ports.json; PortsUnusable if none fit.

    `--base-port 0` reuses the recorded plan (same host and services), taking a
    fresh port for a busy one unless it is a Raft port and some node has Raft
    data. A fixed base gives the fixed scheme. Either way, once any node has
    Raft data, a plan that moves any coordinator's Raft address is refused.
    """
    path = ports_path(data_dir)
    recorded = read_record(path)
    names = [name for name, _ in services]
    reusing = base == 0 and recorded is not None and _same_layout(recorded, host, names)
    formed = _formed_anywhere(data_dir)
    if recorded is not None and reusing:
        # Every node's address, also one without data yet: the others' log names it.
        keep = _raft_ports(recorded[1]) if formed else set()
        plan = _reuse(recorded[1], host, keep, path, busy_wait)
        # The --base-port that first gave these ports (0: they were picked free).
        first_base = _recorded_base(data_dir)
    else:
        plan = plan_ports(base, services, host)
        first_base = base
    if formed and recorded is None:
        warn(
            f"{data_dir / 'coordinator'} holds Raft data but no {PORTS_FILE} says on which "
            "ports it was formed; if the coordinators never elect a leader, start them on "
            "those ports or delete that directory (its leases are lost)"
        )
    elif formed and recorded is not None:
        _check_same_cluster(data_dir, recorded, plan, host)
    write_record(path, host, first_base, plan)
    return plan


def _formed_anywhere(data_dir: Path) -> bool:
    """Whether any coordinator node has Raft state in the data dir.

    Searched below coordinator/ rather than at a fixed path: a node keeps it in
    <its DATA_DIR>/node-<id>/ (raft_config.NodeConfig.node_dir), i.e. under
    the launcher's layout coordinator/node-N/node-N/.
    """
    root = data_dir / "coordinator"
    return any(next(root.rglob(name), None) is not None for name in RAFT_FILES)


def _raft_ports(plan: PortPlan) -> set[int]:
    return {ports.raft for ports in plan.services.values() if ports.raft is not None}


def _same_layout(recorded: tuple[str, PortPlan], host: str, names: list[str]) -> bool:
    recorded_host, plan = recorded
    return recorded_host == host and list(plan.services) == names


def _reuse(plan: PortPlan, host: str, keep: set[int], path: Path, wait: float) -> PortPlan:
    """`plan`, with a free port instead of each busy one; PortsUnusable if one in `keep` is busy."""
    taken = {p for s in plan.services.values() for p in (s.grpc, s.metrics, s.raft) if p}
    taken |= {p for p in (plan.redis, plan.postgres, plan.s3, plan.oidc) if p}
    busy = _still_busy(host, taken, wait)

    def usable(port: int | None, what: str) -> int:
        if port is not None and port not in busy:
            return port
        if port in keep:
            raise PortsUnusable(
                f"port {port}, the Raft port of {what} recorded in {path}, is in use by "
                "another process. The coordinator cluster's log names that address, so "
                "on another port its nodes would never elect a leader: free the port "
                f"(`ss -ltnp 'sport = :{port}'` shows who holds it) and start again"
            )
        while (new := free_port(host)) in taken:
            pass
        taken.add(new)
        return new

    def service(name: str, ports: ServicePorts) -> ServicePorts:
        return ServicePorts(
            grpc=usable(ports.grpc, name),
            metrics=usable(ports.metrics, name),
            raft=None if ports.raft is None else usable(ports.raft, name),
        )

    return PortPlan(
        redis=usable(plan.redis, "redis"),
        postgres=usable(plan.postgres, "postgres"),
        s3=usable(plan.s3, "seaweedfs"),
        oidc=usable(plan.oidc, "oidc-provider"),
        services={name: service(name, ports) for name, ports in plan.services.items()},
    )


def _still_busy(host: str, ports: set[int], wait: float) -> set[int]:
    """Those of `ports` still listened on after up to `wait` seconds.

    A launcher killed with -9 leaves its children draining for a few seconds
    (they get SIGTERM as it dies): starting again at once must not find their
    ports taken.
    """
    deadline = time.monotonic() + wait
    busy = {port for port in ports if _busy(host, port)}
    while busy and time.monotonic() < deadline:
        time.sleep(BUSY_POLL_SECONDS)
        busy = {port for port in busy if _busy(host, port)}
    return busy


def _busy(host: str, port: int) -> bool:
    """Whether something listens on host:port (a closed socket in TIME_WAIT does not count)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # As the servers themselves bind, so a port they could bind counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _check_same_cluster(
    data_dir: Path, recorded: tuple[str, PortPlan], plan: PortPlan, host: str
) -> None:
    recorded_host, recorded_plan = recorded
    before = raft_addresses(recorded_plan, recorded_host)
    after = raft_addresses(plan, host)
    if before == after:
        return
    recorded_base = _recorded_base(data_dir)
    hint = "--base-port 0 (which reuses the recorded ports)"
    if recorded_base:
        hint += f" or --base-port {recorded_base}"
    raise PortsUnusable(
        f"the coordinator cluster in {data_dir / 'coordinator'} was formed at Raft addresses "
        f"{_listing(before)} (recorded in {ports_path(data_dir)}); this start would run "
        f"{_listing(after)}. Its nodes keep their voters' addresses in the Raft log, so they "
        f"would never elect a leader. Start with --host {recorded_host} "
        f"--coordinators {len(before)} and {hint}, or delete {data_dir / 'coordinator'} "
        "to form a new cluster (its leases are lost)"
    )


def _listing(addresses: dict[str, str]) -> str:
    return ", ".join(f"{name} {address}" for name, address in addresses.items()) or "none"


def read_record(path: Path) -> tuple[str, PortPlan] | None:
    """(host, plan) from the ports file; None when there is none or it cannot be read."""
    try:
        data: Any = json.loads(path.read_text())
        return str(data["host"]), PortPlan(
            redis=int(data["redis"]),
            postgres=int(data["postgres"]),
            # Absent from records written before these backends existed.
            s3=None if data.get("s3") is None else int(data["s3"]),
            oidc=None if data.get("oidc") is None else int(data["oidc"]),
            services={
                str(name): ServicePorts(
                    grpc=int(p["grpc"]),
                    metrics=int(p["metrics"]),
                    raft=None if p.get("raft") is None else int(p["raft"]),
                )
                for name, p in data["services"].items()
            },
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _recorded_base(data_dir: Path) -> int:
    try:
        return int(json.loads(ports_path(data_dir).read_text()).get("base_port", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        return 0


def write_record(path: Path, host: str, base: int, plan: PortPlan) -> None:
    """Atomically, like endpoints.json: a crash mid-write must not lose the cluster's ports."""
    document = {
        "host": host,
        "base_port": base,
        "redis": plan.redis,
        "postgres": plan.postgres,
        "s3": plan.s3,
        "oidc": plan.oidc,
        "services": {name: asdict(ports) for name, ports in plan.services.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as tmp:
            json.dump(document, tmp, indent=2)
            tmp.write("\n")
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
