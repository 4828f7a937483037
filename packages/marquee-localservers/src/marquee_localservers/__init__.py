"""Real Redis and PostgreSQL server processes on free ports, for tests and `marquee up`."""

from marquee_localservers.errors import BackendUnavailable, ServerStartError
from marquee_localservers.ffmpeg import find_ffmpeg
from marquee_localservers.oidc_provider import OidcProviderServer
from marquee_localservers.postgres import PostgresServer, find_postgres_bindir
from marquee_localservers.process import ServerProcess, free_port, quiet_port
from marquee_localservers.redis import RedisServer, find_redis_server
from marquee_localservers.redis_cluster import RedisClusterServer
from marquee_localservers.seaweedfs import SeaweedServer, find_weed
from marquee_localservers.tempdirs import server_data_dir
from marquee_localservers.typesense import TypesenseServer

__all__ = [
    "BackendUnavailable",
    "OidcProviderServer",
    "PostgresServer",
    "RedisClusterServer",
    "RedisServer",
    "SeaweedServer",
    "ServerProcess",
    "ServerStartError",
    "TypesenseServer",
    "find_ffmpeg",
    "find_postgres_bindir",
    "find_redis_server",
    "find_weed",
    "free_port",
    "quiet_port",
    "server_data_dir",
]
