from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from marquee_localservers import RedisClusterServer


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServer]:
    with RedisClusterServer(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


def test_three_masters_share_every_slot(cluster: RedisClusterServer) -> None:
    assert len(cluster.urls) == 3
    with RedisCluster.from_url(cluster.url) as client:
        assert sorted(n.port for n in client.get_primaries()) == sorted(
            n.port for n in cluster.nodes
        )
        client.mset_nonatomic({f"k{i}": i for i in range(50)})
        assert client.get("k42") == b"42"
        # Keys landed on every master.
        assert all(client.dbsize(target_nodes=node) > 0 for node in client.get_primaries())


def test_a_killed_node_rejoins_with_its_slots(cluster: RedisClusterServer) -> None:
    node = cluster.nodes[1]
    with redis.Redis.from_url(node.url) as direct:
        node_id = direct.execute_command("CLUSTER", "MYID")
    node.kill()
    node.start()
    cluster.wait_ok(timeout=15)
    with redis.Redis.from_url(node.url) as direct:
        assert direct.execute_command("CLUSTER", "MYID") == node_id
    with RedisCluster.from_url(cluster.url) as client:
        client.set("after", 1)
        assert client.get("after") == b"1"


def test_stop_ends_every_node(tmp_path: Path) -> None:
    cluster = RedisClusterServer(tmp_path, size=2)
    cluster.start()
    pids = [node.pid for node in cluster.nodes]
    assert all(pids)
    cluster.stop()
    assert not any(node.is_running() for node in cluster.nodes)
