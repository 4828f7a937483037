from __future__ import annotations

import asyncpg
import pytest
import redis
from redis.cluster import RedisCluster

from marquee_localservers import RedisClusterServer, RedisServer
from marquee_testing import Endpoint, ServerEndpoint
from marquee_testing.fixtures.redis import RedisFactory
from marquee_testing.fixtures.redis_cluster import RedisClusterFactory
from marquee_testing_support import run_inner


def test_redis_fixture_serves_real_redis(redis_server: ServerEndpoint, redis_url: str) -> None:
    assert redis_url == redis_server.url
    with redis.Redis.from_url(redis_url) as client:
        assert client.ping()


def test_redis_flushed_starts_empty(redis_flushed: str) -> None:
    with redis.Redis.from_url(redis_flushed) as client:
        assert client.dbsize() == 0
        client.set("left-behind", 1)


async def test_database_url_works_with_asyncpg(database_url: str) -> None:
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        assert await connection.fetchval("SELECT current_database()") == "marquee"
    finally:
        await connection.close()


def test_factory_servers_can_be_killed_and_restarted(redis_server_factory: RedisFactory) -> None:
    server = redis_server_factory(extra_args=["--tracking-table-max-keys", "10"])
    assert isinstance(server, RedisServer)
    port = server.port
    server.kill()
    server.start()
    assert server.port == port
    with redis.Redis.from_url(server.url) as client:
        assert client.config_get("tracking-table-max-keys")["tracking-table-max-keys"] == "10"


def test_env_url_takes_precedence(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    monkeypatch.setenv("MARQUEE_TEST_REDIS_URL", redis_url)
    monkeypatch.setenv("MARQUEE_TEST_DATABASE_URL", "postgresql://app@db.invalid/app")
    pytester.makepyfile(
        f"""
        from marquee_testing import Endpoint

        def test_urls(redis_server, redis_url, postgres_server, database_url):
            assert redis_url == {redis_url!r}
            assert isinstance(redis_server, Endpoint)
            assert database_url == "postgresql://app@db.invalid/app"
            assert (postgres_server.host, postgres_server.port) == ("db.invalid", 5432)
        """
    )
    run_inner(pytester).assert_outcomes(passed=1)


def test_endpoint_parses_urls() -> None:
    endpoint = Endpoint.from_url("redis://cache.internal:7000/0", 6379)
    assert (endpoint.host, endpoint.port) == ("cache.internal", 7000)
    assert Endpoint.from_url("redis://localhost", 6379).port == 6379


def test_redis_cluster_fixture_serves_a_real_cluster(redis_cluster_url: str) -> None:
    with RedisCluster.from_url(redis_cluster_url) as client:
        assert len(client.get_primaries()) == 3
        client.set("{fixture}:a", 1)
        assert client.get("{fixture}:a") == b"1"


def test_redis_cluster_factory_nodes_can_be_killed(
    redis_cluster_factory: RedisClusterFactory,
) -> None:
    cluster = redis_cluster_factory(size=2)
    assert isinstance(cluster, RedisClusterServer)
    cluster.nodes[0].kill()
    cluster.nodes[0].start()
    cluster.wait_ok(timeout=15)
