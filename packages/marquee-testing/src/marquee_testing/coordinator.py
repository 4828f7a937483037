"""A real coordinator cluster for tests: `python -m marquee_coordinator` processes on loopback.

Each node is spawned the way `marquee up` spawns it, with its settings in
MARQUEE_COORDINATOR_* variables (see marquee_coordinator/settings.py). Nodes are
ServerProcesses, so they die with the test process (a death signal, atexit)
even when a fixture never gets to stop them.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import grpc

from marquee.coordinator.v1 import cluster_pb2, cluster_pb2_grpc
from marquee_localservers import ServerProcess, free_port

RaftTiming = Literal["default", "fast"]
"""MARQUEE_COORDINATOR_RAFT_TIMING: "fast" elects in well under a second on loopback."""

HOST = "127.0.0.1"
# Authenticates the Raft transport; it only has to match between the nodes of a test.
CLUSTER_SECRET = "test-secret"  # noqa: S105  # nosec B105
# Short, so stopping a node (a leadership handover first) keeps teardown quick.
SHUTDOWN_GRACE_SECONDS = 2


class CoordinatorNode(ServerProcess):
    """One member. start() returns once its gRPC API answers, before there is a leader.

    kill() is a crash (SIGKILL, nothing handed over); stop() is a planned stop
    (SIGTERM: the leader hands over first); start() again after either restarts
    it on the same ports with the same data.
    """

    log_name = "node.log"

    def __init__(
        self,
        node_id: int,
        data_dir: Path,
        raft_address: str,
        peers: Sequence[str],
        *,
        timing: RaftTiming,
        secret: str,
    ) -> None:
        super().__init__(f"coordinator node {node_id}", data_dir, None, HOST)
        self.node_id = node_id
        self.raft_address = raft_address
        self.peers = list(peers)
        self.timing = timing
        self.secret = secret

    @property
    def grpc_address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        # What a gRPC client dials: host:port.
        return self.grpc_address

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "marquee_coordinator"]

    def _spawn_options(self) -> dict[str, Any]:
        settings = {
            "NODE_ID": str(self.node_id),
            "GRPC_HOST": self.host,
            "GRPC_PORT": str(self.port),
            "METRICS_PORT": "-1",
            "RAFT_ADDRESS": self.raft_address,
            "PEERS": ",".join(self.peers),
            "DATA_DIR": str(self.data_dir),
            "CLUSTER_SECRET": self.secret,
            "RAFT_TIMING": self.timing,
            "LOG_FORMAT": "console",
            "SHUTDOWN_GRACE_SECONDS": str(SHUTDOWN_GRACE_SECONDS),
        }
        return {"env": os.environ | {f"MARQUEE_COORDINATOR_{k}": v for k, v in settings.items()}}

    def _ping(self) -> bool:
        try:
            self.status(timeout=0.5)
        except grpc.RpcError:
            return False
        return True

    def status(self, timeout: float = 2.0) -> cluster_pb2.StatusResponse:
        """This member's view of the cluster (ClusterService.Status)."""
        # A channel per call: one kept across a restart would wait out its reconnect backoff.
        with grpc.insecure_channel(self.grpc_address) as channel:
            stub = cluster_pb2_grpc.ClusterServiceStub(channel)
            return stub.Status(cluster_pb2.StatusRequest(), timeout=timeout)

    def is_leader(self) -> bool:
        """Running, leading, and with a quorum behind it."""
        if not self.is_running():
            return False
        try:
            status = self.status(timeout=0.5)
        except grpc.RpcError:
            return False
        return status.member.role == cluster_pb2.MEMBER_ROLE_LEADER and status.has_quorum


class CoordinatorCluster:
    """`with CoordinatorCluster(root) as cluster:` N nodes with a leader; all stopped on exit.

    Every port is free when chosen; each node keeps its data in root/node-<id>.
    """

    def __init__(
        self,
        root: Path,
        size: int = 3,
        *,
        timing: RaftTiming = "fast",
        secret: str = CLUSTER_SECRET,
    ) -> None:
        rafts = [f"{HOST}:{free_port(HOST)}" for _ in range(size)]
        self.nodes = [
            CoordinatorNode(
                i,
                root / f"node-{i}",
                raft,
                [peer for peer in rafts if peer != raft],
                timing=timing,
                secret=secret,
            )
            for i, raft in enumerate(rafts, start=1)
        ]

    @property
    def endpoints(self) -> list[str]:
        """Every node's gRPC address, as clients take them."""
        return [node.grpc_address for node in self.nodes]

    def node(self, grpc_address: str) -> CoordinatorNode:
        """The node serving `grpc_address` (e.g. a status header's leader_address)."""
        return next(node for node in self.nodes if node.grpc_address == grpc_address)

    def start(self, timeout: float = 30.0) -> CoordinatorNode:
        """Start every node and return the leader they elect; on failure, stop them all."""
        try:
            for node in self.nodes:
                node.start(timeout)
            return self.wait_for_leader(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every node still running (cleanly, SIGKILL if one hangs)."""
        for node in self.nodes:
            node.stop()

    def leader(self) -> CoordinatorNode | None:
        """The node that leads with a quorum right now, if any."""
        return next((node for node in self.nodes if node.is_leader()), None)

    def wait_for_leader(self, timeout: float = 30.0) -> CoordinatorNode:
        """Until a node leads with a quorum; TimeoutError with the nodes' logs if none does.

        Blocking: from async code, run it with asyncio.to_thread.
        """
        deadline = time.monotonic() + timeout
        while (leader := self.leader()) is None:
            if not any(node.is_running() for node in self.nodes):
                raise RuntimeError(f"every coordinator node exited\n{self.logs()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no coordinator leader within {timeout} s\n{self.logs()}")
            time.sleep(0.05)
        return leader

    def logs(self, lines: int = 20) -> str:
        """The tail of every node's log, for failure messages."""
        return "\n".join(
            f"--- node {node.node_id}\n{node.log_tail(lines=lines)}" for node in self.nodes
        )

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
