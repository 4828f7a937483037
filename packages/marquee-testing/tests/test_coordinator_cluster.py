from __future__ import annotations

from pathlib import Path

from marquee_testing.coordinator import CoordinatorCluster


def test_shared_cluster_has_a_leader_on_one_of_its_endpoints(
    coordinator_cluster: CoordinatorCluster,
) -> None:
    leader = coordinator_cluster.wait_for_leader()
    assert len(set(coordinator_cluster.endpoints)) == 3
    assert coordinator_cluster.node(leader.grpc_address) is leader


def test_a_stopped_node_restarts_on_the_same_port_and_all_stop_on_exit(tmp_path: Path) -> None:
    # One node (it elects itself) keeps this cheap: it is the life cycle under test.
    with CoordinatorCluster(tmp_path, size=1) as cluster:
        (node,) = cluster.nodes
        endpoints = cluster.endpoints
        assert cluster.leader() is node
        node.stop()
        assert not node.is_running()
        assert cluster.leader() is None
        node.start()  # returns once the node listens on its port again
        assert cluster.endpoints == endpoints
        assert cluster.wait_for_leader() is node
    assert not node.is_running()
