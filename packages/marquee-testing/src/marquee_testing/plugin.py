"""The `marquee` pytest plugin (pytest11 entry point): session fixtures backed by real servers.

Each backend lives in its own module under fixtures/; importing the fixtures here
is what registers them with pytest.
"""

from marquee_testing.backends import require_backend
from marquee_testing.fixtures.coordinator import coordinator_cluster
from marquee_testing.fixtures.dragonfly import dragonfly_server, dragonfly_url
from marquee_testing.fixtures.ffmpeg import ffmpeg_paths
from marquee_testing.fixtures.oidc import oidc_provider
from marquee_testing.fixtures.postgres import database_url, postgres_server, scratch_database_url
from marquee_testing.fixtures.redis import (
    redis_flushed,
    redis_server,
    redis_server_factory,
    redis_url,
)
from marquee_testing.fixtures.redis_cluster import redis_cluster_factory, redis_cluster_url
from marquee_testing.fixtures.seaweedfs import seaweedfs_server
from marquee_testing.typesense import typesense_server

__all__ = [
    "coordinator_cluster",
    "database_url",
    "dragonfly_server",
    "dragonfly_url",
    "ffmpeg_paths",
    "oidc_provider",
    "postgres_server",
    "redis_cluster_factory",
    "redis_cluster_url",
    "redis_flushed",
    "redis_server",
    "redis_server_factory",
    "redis_url",
    "require_backend",
    "scratch_database_url",
    "seaweedfs_server",
    "typesense_server",
]
