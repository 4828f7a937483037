from __future__ import annotations

import pytest

from marquee_cli.ports import ServicePorts, address, plan_ports
from marquee_cli.suite import suite_services

SUITE = [(s.name, s.node_id) for s in suite_services(3)]


def test_default_scheme() -> None:
    plan = plan_ports(50050, SUITE)
    assert plan.services["cache-gateway"] == ServicePorts(grpc=50050, metrics=50150)
    assert plan.services["search"] == ServicePorts(grpc=50053, metrics=50153)
    assert plan.services["coordinator-1"] == ServicePorts(grpc=50054, metrics=50154, raft=50250)
    assert plan.services["coordinator-3"] == ServicePorts(grpc=50056, metrics=50156, raft=50252)
    assert (plan.redis, plan.postgres) == (50350, 50351)


def test_base_zero_picks_distinct_free_ports() -> None:
    plan = plan_ports(0, SUITE)
    ports = [plan.redis, plan.postgres]
    for service in plan.services.values():
        ports += [service.grpc, service.metrics] + ([service.raft] if service.raft else [])
    assert len(ports) == len(set(ports)) == 2 + 7 * 2 + 3
    assert all(port > 0 for port in ports)


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
