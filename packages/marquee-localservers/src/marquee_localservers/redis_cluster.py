"""A local Redis Cluster: N masters (no replicas), each a `RedisServer` with cluster mode on.

The cluster is formed with plain commands through redis-py (CLUSTER
SET-CONFIG-EPOCH, ADDSLOTSRANGE, MEET), as `redis-cli --cluster create` does, so
no binary beyond redis-server is needed. Each node keeps its identity and slots
in `nodes.conf`, so a node that is killed and started again rejoins by itself
with the same slots (its data survives only with persistent=True).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from marquee_localservers.errors import ServerStartError
from marquee_localservers.process import free_port
from marquee_localservers.redis import RedisServer

if TYPE_CHECKING:
    # redis-py takes 0.3 s to import; `marquee up` imports this package and never uses it.
    import redis

SLOTS = 16384


class RedisClusterServer:
    """`size` cluster-enabled redis-server processes on free ports under `data_dir`."""

    def __init__(
        self,
        data_dir: Path,
        size: int = 3,
        host: str = "127.0.0.1",
        *,
        persistent: bool = False,
        node_timeout_ms: int = 1000,
        extra_args: Sequence[str] = (),
        binary: str | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("a cluster needs at least one node")
        self.data_dir = Path(data_dir).absolute()
        self.nodes: list[RedisServer] = []
        self._bus_ports: list[int] = []
        for i in range(size):
            # The bus port is chosen explicitly (cluster-port, Redis >= 7): the
            # default port + 10000 may be taken or above 65535 for an ephemeral port.
            self._bus_ports.append(free_port(host))
            cluster_args = [
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-port", str(self._bus_ports[-1]),
                "--cluster-node-timeout", str(node_timeout_ms),
                # Without replicas, a dead master would otherwise stop the whole
                # cluster (CLUSTERDOWN); tests want the other slots to keep serving.
                "--cluster-require-full-coverage", "no",
            ]  # fmt: skip
            self.nodes.append(
                RedisServer(
                    self.data_dir / f"node{i}",
                    host=host,
                    persistent=persistent,
                    extra_args=[*cluster_args, *extra_args],
                    binary=binary,
                )
            )

    @property
    def urls(self) -> list[str]:
        """One redis:// URL per node (any one is enough for a cluster client to start)."""
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        return self.urls[0]

    def start(self, timeout: float = 30.0) -> None:
        """Start every node, form the cluster if it is new, wait for cluster_state:ok."""
        deadline = time.monotonic() + timeout
        try:
            for node in self.nodes:
                node.start(max(deadline - time.monotonic(), 1.0))
            self._form()
            self.wait_ok(max(deadline - time.monotonic(), 1.0))
        except BaseException:
            self.stop()
            raise

    def _form(self) -> None:
        """Assign slot ranges and introduce the nodes; a no-op for a cluster formed before."""
        if all(self._info(node).get("cluster_slots_assigned") == str(SLOTS) for node in self.nodes):
            return
        size = len(self.nodes)
        bounds = [SLOTS * i // size for i in range(size + 1)]
        first = self.nodes[0]
        for i, node in enumerate(self.nodes):
            with self._client(node) as client:
                # Distinct epochs up front, as redis-cli does: otherwise the nodes
                # resolve their equal epochs one collision at a time.
                client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", i + 1)
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", bounds[i], bounds[i + 1] - 1)
        with self._client(first) as client:
            for node, bus_port in list(zip(self.nodes, self._bus_ports, strict=True))[1:]:
                client.execute_command("CLUSTER", "MEET", node.host, node.port, bus_port)

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every running node sees the whole cluster with all slots served."""
        deadline = time.monotonic() + timeout
        size = str(len(self.nodes))
        while True:
            infos = [self._info(node) for node in self.nodes if node.is_running()]
            if all(
                info.get("cluster_state") == "ok"
                and info.get("cluster_slots_ok") == str(SLOTS)
                and info.get("cluster_known_nodes") == size
                for info in infos
            ):
                return
            if time.monotonic() > deadline:
                tail = self.nodes[0].log_tail()
                raise ServerStartError(
                    f"redis cluster in {self.data_dir} not ok after {timeout}s: {infos}; "
                    f"node0 log:\n{tail}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def _client(self, node: RedisServer) -> redis.Redis:
        import redis  # lazily: see the import above

        return redis.Redis(host=node.host, port=node.port, socket_timeout=5, decode_responses=True)

    def _info(self, node: RedisServer) -> dict[str, str]:
        import redis  # lazily: see the import at the top

        try:
            with self._client(node) as client:
                text = str(client.execute_command("CLUSTER", "INFO"))
        except redis.RedisError:
            return {}
        return dict(line.split(":", 1) for line in text.split() if ":" in line)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<RedisClusterServer {self.urls} dir={self.data_dir}>"
