"""Coordinator nodes as real `python -m marquee_coordinator` processes, driven over gRPC."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from coordinator_cluster import free_port
from grpc_health.v1 import health_pb2, health_pb2_grpc

from marquee.coordinator.v1 import cluster_pb2, cluster_pb2_grpc, lease_pb2_grpc

SECRET = "test-secret"
# The nodes run the prod profile without an admin token: the cluster secret is the
# admin credential that MemberAdd, MemberRemove and TransferLeadership need.
ADMIN = (("authorization", f"Bearer {SECRET}"),)
LEASE_SERVICE = "marquee.coordinator.v1.LeaseService"


@dataclass
class GrpcNode:
    node_id: int
    data_dir: Path
    raft_address: str = field(default_factory=lambda: f"127.0.0.1:{free_port()}")
    grpc_address: str = field(default_factory=lambda: f"127.0.0.1:{free_port()}")
    peers: list[str] = field(default_factory=list)
    # A network namespace to run in (`ip netns exec`); its gRPC then listens on the
    # host of grpc_address, which only exists inside that namespace.
    netns: str | None = None
    # MARQUEE_COORDINATOR_RAFT_TIMING: "fast" (loopback tests) or "default" (production).
    timing: str = "fast"
    # MARQUEE_COORDINATOR_METRICS_PORT: -1 serves no /metrics.
    metrics_port: int = -1
    # MARQUEE_COORDINATOR_LOCAL_RENEWAL: plain renewals answered under the leader lease.
    local_renewal: bool = True
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _channel: grpc.Channel | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return str(self.node_id)

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"node-{self.node_id}.log"

    def start(self) -> None:
        env = {
            **os.environ,
            "MARQUEE_COORDINATOR_NODE_ID": self.id,
            "MARQUEE_COORDINATOR_RAFT_ADDRESS": self.raft_address,
            "MARQUEE_COORDINATOR_PEERS": ",".join(self.peers),
            "MARQUEE_COORDINATOR_DATA_DIR": str(self.data_dir),
            "MARQUEE_COORDINATOR_CLUSTER_SECRET": SECRET,
            "MARQUEE_COORDINATOR_PROFILE": "prod",
            "MARQUEE_COORDINATOR_GRPC_PORT": self.grpc_address.rpartition(":")[2],
            "MARQUEE_COORDINATOR_METRICS_PORT": str(self.metrics_port),
            "MARQUEE_COORDINATOR_RAFT_TIMING": self.timing,
            "MARQUEE_COORDINATOR_SHUTDOWN_GRACE_SECONDS": "3",
            "MARQUEE_COORDINATOR_LOCAL_RENEWAL": "true" if self.local_renewal else "false",
        }
        command = [sys.executable, "-m", "marquee_coordinator"]
        if self.netns is not None:
            env["MARQUEE_COORDINATOR_GRPC_HOST"] = self.grpc_address.rpartition(":")[0]
            command = ["ip", "netns", "exec", self.netns, *command]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.grpc_address)
        return self._channel

    @property
    def leases(self) -> lease_pb2_grpc.LeaseServiceStub:
        return lease_pb2_grpc.LeaseServiceStub(self.channel)

    @property
    def cluster(self) -> cluster_pb2_grpc.ClusterServiceStub:
        return cluster_pb2_grpc.ClusterServiceStub(self.channel)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def serving(self) -> bool:
        """Health says SERVING: this node has a leader (or serves as one)."""
        try:
            reply = health_pb2_grpc.HealthStub(self.channel).Check(
                health_pb2.HealthCheckRequest(service=LEASE_SERVICE), timeout=0.5
            )
        except grpc.RpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    def status(self) -> cluster_pb2.StatusResponse:
        return self.cluster.Status(cluster_pb2.StatusRequest(), timeout=2)

    def is_leader(self) -> bool:
        try:
            status = self.status()
        except grpc.RpcError:
            return False
        return status.member.role == cluster_pb2.MEMBER_ROLE_LEADER and status.has_quorum

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 15.0) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        code = self.process.wait(timeout)
        self.process = None
        self.close_channel()
        return code

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None
        self.close_channel()

    def close_channel(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def wait_until_serving(nodes: list[GrpcNode], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    for node in nodes:
        while not node.serving():
            if not node.running():
                raise RuntimeError(f"node {node.id} exited:\n{node.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {node.id} not serving:\n{node.log_tail()}")
            time.sleep(0.05)


def wait_for_leader(nodes: list[GrpcNode], timeout: float = 15.0) -> GrpcNode:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for node in nodes:
            if node.running() and node.is_leader():
                return node
        time.sleep(0.02)
    tails = "\n".join(f"--- {n.id}\n{n.log_tail(8)}" for n in nodes)
    raise TimeoutError(f"no leader within {timeout} s\n{tails}")


def member_ids(node: GrpcNode) -> list[str]:
    return [
        m.id for m in node.cluster.MemberList(cluster_pb2.MemberListRequest(), timeout=2).members
    ]
