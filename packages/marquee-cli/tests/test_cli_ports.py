from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from marquee_cli.port_record import PortsUnusable, plan_for_data_dir, ports_path, read_record
from marquee_cli.ports import PortPlan, ServicePorts, address, plan_ports
from marquee_cli.suite import SuiteContext, service_env, suite_services
from marquee_coordinator.raft_config import NodeConfig

SUITE = [(s.name, s.node_id) for s in suite_services(3)]
# Below the kernel's ephemeral range (32768-60999 by default), so no outgoing
# connection holds one of its ports while a test checks them.
FIXED_BASE = 20050


def test_default_scheme() -> None:
    plan = plan_ports(50050, SUITE)
    assert plan.services["cache-gateway"] == ServicePorts(grpc=50050, metrics=50150)
    assert plan.services["search"] == ServicePorts(grpc=50053, metrics=50153)
    assert plan.services["coordinator-1"] == ServicePorts(grpc=50054, metrics=50154, raft=50250)
    assert plan.services["coordinator-3"] == ServicePorts(grpc=50056, metrics=50156, raft=50252)
    assert (plan.redis, plan.postgres) == (50350, 50351)


def test_base_zero_picks_distinct_free_ports() -> None:
    plan = plan_ports(0, SUITE)
    assert plan.s3 is not None
    assert plan.oidc is not None
    ports = [plan.redis, plan.postgres, plan.s3, plan.oidc]
    for service in plan.services.values():
        ports += [service.grpc, service.metrics] + ([service.raft] if service.raft else [])
    assert len(ports) == len(set(ports)) == 4 + 7 * 2 + 3
    # Below the ephemeral range: the processes connect to each other while
    # others still start, and no connection's source port can take these.
    first_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert all(0 < port < first_ephemeral for port in ports)


def test_only_coordinators_get_raft_ports() -> None:
    plan = plan_ports(0, SUITE)
    with_raft = {name for name, ports in plan.services.items() if ports.raft}
    assert with_raft == {"coordinator-1", "coordinator-2", "coordinator-3"}


@pytest.mark.parametrize("base", [80, 65535, -1])
def test_base_out_of_range(base: int) -> None:
    with pytest.raises(ValueError, match="base port"):
        plan_ports(base, SUITE)


def test_address_brackets_ipv6() -> None:
    assert address("127.0.0.1", 1) == "127.0.0.1:1"
    assert address("::1", 1) == "[::1]:1"


# --- the ports a data dir keeps (port_record) ---------------------------------------


def plan_in(
    data_dir: Path, base: int, warnings: list[str] | None = None, busy_wait: float = 0.2
) -> PortPlan:
    sink = warnings if warnings is not None else []
    return plan_for_data_dir(
        data_dir, base, SUITE, "127.0.0.1", warn=sink.append, busy_wait=busy_wait
    )


def form_cluster(data_dir: Path, nodes: range = range(1, 4)) -> None:
    """Leave a journal where a coordinator node started by the launcher keeps it."""
    context = SuiteContext(data_dir, "127.0.0.1", plan_ports(0, SUITE), "", "", "secret")
    for spec in suite_services(3):
        if spec.node_id is None or spec.node_id not in nodes:
            continue
        env = service_env(spec, context, inherited={})
        config = NodeConfig(
            node_id=spec.node_id,
            raft_address=env["MARQUEE_COORDINATOR_RAFT_ADDRESS"],
            peers=(),
            data_dir=Path(env["MARQUEE_COORDINATOR_DATA_DIR"]),
            cluster_secret=None,
        )
        config.node_dir.mkdir(parents=True)
        config.journal_file.write_bytes(b"x")


def test_base_zero_reuses_the_ports_recorded_at_first_start(tmp_path: Path) -> None:
    first = plan_in(tmp_path, 0)
    assert read_record(ports_path(tmp_path)) == ("127.0.0.1", first)
    form_cluster(tmp_path)
    assert plan_in(tmp_path, 0) == first


def test_a_fixed_base_is_recorded_and_reused_by_base_zero(tmp_path: Path) -> None:
    fixed = plan_in(tmp_path, FIXED_BASE)
    form_cluster(tmp_path)
    assert plan_in(tmp_path, 0) == fixed
    assert plan_in(tmp_path, FIXED_BASE) == fixed


def test_moving_a_formed_cluster_is_refused_before_anything_starts(tmp_path: Path) -> None:
    first = plan_in(tmp_path, 0)
    form_cluster(tmp_path)
    with pytest.raises(PortsUnusable, match="would never elect a leader") as refused:
        plan_in(tmp_path, FIXED_BASE)
    node_1 = f"coordinator-1 127.0.0.1:{first.services['coordinator-1'].raft}"
    assert node_1 in str(refused.value)
    assert "--base-port 0" in str(refused.value)
    # The record still names the cluster's ports.
    assert read_record(ports_path(tmp_path)) == ("127.0.0.1", first)


def test_another_coordinator_count_is_refused_for_a_formed_cluster(tmp_path: Path) -> None:
    plan_in(tmp_path, 0)
    form_cluster(tmp_path)
    two = [(s.name, s.node_id) for s in suite_services(2)]
    with pytest.raises(PortsUnusable, match="--coordinators 3"):
        plan_for_data_dir(tmp_path, 0, two, "127.0.0.1", warn=print)


def test_without_raft_data_any_plan_goes(tmp_path: Path) -> None:
    plan_in(tmp_path, 0)
    fixed = plan_in(tmp_path, FIXED_BASE)
    assert read_record(ports_path(tmp_path)) == ("127.0.0.1", fixed)


def test_a_busy_raft_port_of_a_formed_node_is_refused(tmp_path: Path) -> None:
    first = plan_in(tmp_path, 0)
    form_cluster(tmp_path)
    raft = first.services["coordinator-2"].raft
    assert raft is not None
    with listening(raft), pytest.raises(PortsUnusable, match=f"port {raft}, the Raft port"):
        plan_in(tmp_path, 0)


def test_a_node_without_data_keeps_its_raft_port_once_others_have_data(tmp_path: Path) -> None:
    # Nodes 1 and 2 count node 3's recorded address as a voter.
    first = plan_in(tmp_path, 0)
    form_cluster(tmp_path, range(1, 3))
    raft = first.services["coordinator-3"].raft
    assert raft is not None
    with listening(raft), pytest.raises(PortsUnusable, match=f"port {raft}, the Raft port"):
        plan_in(tmp_path, 0)


def test_a_port_freed_meanwhile_is_kept(tmp_path: Path) -> None:
    # As when the children of a launcher killed with -9 are still draining.
    first = plan_in(tmp_path, 0)
    form_cluster(tmp_path)
    raft = first.services["coordinator-1"].raft
    assert raft is not None
    with listening(raft) as sock:
        # Whenever it closes, before or during the wait, the port is kept.
        closer = threading.Timer(0.3, sock.close)
        closer.start()
        second = plan_in(tmp_path, 0, busy_wait=60.0)
        closer.join()
    assert second == first


def test_a_busy_stateless_port_is_replaced(tmp_path: Path) -> None:
    first = plan_in(tmp_path, 0)
    form_cluster(tmp_path)
    busy = first.services["auth"].grpc
    with listening(busy):
        second = plan_in(tmp_path, 0)
    assert second.services["auth"].grpc != busy
    for node in ("coordinator-1", "coordinator-2", "coordinator-3"):
        assert second.services[node] == first.services[node]
    assert read_record(ports_path(tmp_path)) == ("127.0.0.1", second)


def test_without_raft_data_a_busy_raft_port_is_replaced(tmp_path: Path) -> None:
    first = plan_in(tmp_path, 0)
    raft = first.services["coordinator-1"].raft
    assert raft is not None
    with listening(raft):
        assert plan_in(tmp_path, 0).services["coordinator-1"].raft != raft


def test_raft_data_without_a_record_warns(tmp_path: Path) -> None:
    form_cluster(tmp_path)
    warnings: list[str] = []
    plan_in(tmp_path, 0, warnings)
    assert len(warnings) == 1
    assert "no ports.json" in warnings[0]


@contextmanager
def listening(port: int) -> Iterator[socket.socket]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        yield sock
