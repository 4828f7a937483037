"""Marquee's coordinator as 3 real `python -m marquee_coordinator` processes.

Driven through the raw generated stubs (not marquee_lease), so the figures are
the server's: no client-side retry or backoff is added to them.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import grpc
from coordinator.coordinator_bench_measure import (
    LEASE_TTL,
    PROBE_ATTEMPT_SECONDS,
    PROBE_CHANNEL_OPTIONS,
    Grant,
    first_write,
)
from google.protobuf.duration_pb2 import Duration

from marquee.coordinator.v1 import cluster_pb2, cluster_pb2_grpc, lease_pb2, lease_pb2_grpc
from marquee_lease.transport import leader_hint
from marquee_localservers import free_port
from marquee_localservers.spawning import child_argv

CALL_TIMEOUT = 5.0
CLUSTER_SECRET = "bench-secret"
# TransferLeadership changes the cluster: it takes the admin credential, which is
# the cluster secret while MARQUEE_COORDINATOR_ADMIN_TOKEN is unset.
ADMIN_METADATA = (("authorization", f"Bearer {CLUSTER_SECRET}"),)
# A renewal stream lives for one throughput figure; the deadline only bounds a hang.
STREAM_TIMEOUT = 300.0
# The probe write: the same holder re-acquiring one name (each one a log entry).
PROBE_REQUEST = lease_pb2.AcquireRequest(
    name="bench/probe", holder_id="bench-probe", ttl=Duration(seconds=LEASE_TTL)
)


@dataclass
class Node:
    node_id: str
    raft_address: str = field(default_factory=lambda: f"127.0.0.1:{free_port()}")
    grpc_address: str = field(default_factory=lambda: f"127.0.0.1:{free_port()}")
    process: subprocess.Popen[bytes] | None = None
    channel: grpc.aio.Channel | None = None

    def stub(self) -> lease_pb2_grpc.LeaseServiceAsyncStub:
        return lease_pb2_grpc.LeaseServiceStub(self.open())

    def cluster(self) -> cluster_pb2_grpc.ClusterServiceAsyncStub:
        return cluster_pb2_grpc.ClusterServiceStub(self.open())

    def open(self) -> grpc.aio.Channel:
        if self.channel is None:
            # Fast reconnects (PROBE_CHANNEL_OPTIONS): a starting node is probed every 5 ms.
            self.channel = grpc.aio.insecure_channel(
                self.grpc_address, options=PROBE_CHANNEL_OPTIONS
            )
        return self.channel

    def forget_channel(self) -> None:
        # Not awaited close(): the process is gone, and a fresh channel avoids
        # waiting out the old one's reconnect backoff.
        if self.channel is not None:
            asyncio.get_running_loop().create_task(self.channel.close())
            self.channel = None


class MarqueeCluster:
    """`async with MarqueeCluster(timing="default") as cluster:`; stops every node on exit."""

    label = "marquee"

    def __init__(self, timing: str = "default") -> None:
        self.timing = timing
        self._tmp = tempfile.TemporaryDirectory(prefix="bench-coordinator-")
        self.data_dir = Path(self._tmp.name)
        self.nodes = {str(i): Node(str(i)) for i in (1, 2, 3)}
        self.node_ids: Sequence[str] = list(self.nodes)
        self._by_address = {n.grpc_address: n.node_id for n in self.nodes.values()}
        self._leader_stub: lease_pb2_grpc.LeaseServiceAsyncStub | None = None

    async def __aenter__(self) -> MarqueeCluster:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for node in self.nodes.values():
            if node.process is not None and node.process.poll() is None:
                node.process.terminate()
        for node in self.nodes.values():
            if node.channel is not None:
                await node.channel.close()
            if node.process is not None:
                try:
                    node.process.wait(15)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait()
        self._tmp.cleanup()

    # -- processes -------------------------------------------------------------------

    def spawn(self, node_id: str) -> None:
        node = self.nodes[node_id]
        peers = [n.raft_address for n in self.nodes.values() if n is not node]
        env = {
            **os.environ,
            "MARQUEE_COORDINATOR_NODE_ID": node_id,
            "MARQUEE_COORDINATOR_RAFT_ADDRESS": node.raft_address,
            "MARQUEE_COORDINATOR_PEERS": ",".join(peers),
            "MARQUEE_COORDINATOR_DATA_DIR": str(self.data_dir),
            "MARQUEE_COORDINATOR_CLUSTER_SECRET": CLUSTER_SECRET,
            "MARQUEE_COORDINATOR_PROFILE": "prod",
            "MARQUEE_COORDINATOR_GRPC_PORT": node.grpc_address.rpartition(":")[2],
            "MARQUEE_COORDINATOR_METRICS_PORT": "-1",
            "MARQUEE_COORDINATOR_RAFT_TIMING": self.timing,
            "MARQUEE_COORDINATOR_LOG_LEVEL": os.environ.get("BENCH_NODE_LOG_LEVEL", "WARNING"),
            "MARQUEE_COORDINATOR_SHUTDOWN_GRACE_SECONDS": "3",
            # BENCH_LOCAL_RENEWAL=false: every renewal through the log (LOCAL_RENEWAL=false).
            "MARQUEE_COORDINATOR_LOCAL_RENEWAL": os.environ.get("BENCH_LOCAL_RENEWAL", "true"),
        }
        with (self.data_dir / f"node-{node_id}.log").open("ab") as log:
            node.process = subprocess.Popen(
                # Dies with the bench (death signal), started without a fork.
                child_argv([sys.executable, "-m", "marquee_coordinator"]),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self, node_id: str) -> None:
        node = self.nodes[node_id]
        assert node.process is not None
        node.process.kill()
        node.process.wait()
        node.forget_channel()

    def terminate(self, node_id: str) -> None:
        process = self.nodes[node_id].process
        assert process is not None
        process.terminate()

    async def wait_exit(self, node_id: str) -> None:
        node = self.nodes[node_id]
        while node.process is not None and node.process.poll() is None:
            await asyncio.sleep(0.05)
        node.forget_channel()

    def log_tail(self, node_id: str, lines: int = 10) -> str:
        path = self.data_dir / f"node-{node_id}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # -- cluster state -----------------------------------------------------------------

    async def _status(self, node: Node) -> cluster_pb2.StatusResponse | None:
        try:
            return await node.cluster().Status(cluster_pb2.StatusRequest(), timeout=0.5)
        except grpc.aio.AioRpcError:
            return None

    def running(self, node_id: str) -> bool:
        process = self.nodes[node_id].process
        return process is not None and process.poll() is None

    async def _healthy_leader(self) -> str | None:
        """The leader, once every node has a quorum and the leader sees all caught up."""
        for node_id in self.node_ids:
            if not self.running(node_id):
                raise RuntimeError(f"node {node_id} exited:\n{self.log_tail(node_id)}")
        statuses = [await self._status(node) for node in self.nodes.values()]
        if not all(s is not None and s.has_quorum for s in statuses):
            return None
        leaders = [
            s for s in statuses if s is not None and s.member.role == cluster_pb2.MEMBER_ROLE_LEADER
        ]
        if len(leaders) == 1 and all(m.healthy for m in leaders[0].members):
            return leaders[0].member.id
        return None

    async def settled(self) -> tuple[str, int]:
        deadline = asyncio.get_running_loop().time() + 60
        while (leader := await self._healthy_leader()) is None:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("the Marquee cluster did not settle within 60 s")
            await asyncio.sleep(0.05)
        return leader, await first_write(self, self.node_ids, min_term=0)

    async def write_once(self, node_id: str, node_ids: Sequence[str], min_term: int) -> int | None:
        """(Re-)acquire the probe lease through `node_id`, following one redirect."""
        for _ in range(2):
            try:
                reply = (
                    await self.nodes[node_id]
                    .stub()
                    .Acquire(PROBE_REQUEST, timeout=PROBE_ATTEMPT_SECONDS)
                )
            except grpc.aio.AioRpcError as error:
                # A follower names the leader; going there at once is what clients do,
                # but only to a node being probed: writes sent back to a leader on
                # its way out would only load it (and commit in its old term).
                hinted = self._by_address.get(leader_hint(error), "")
                if hinted not in node_ids or hinted == node_id:
                    return None
                node_id = hinted
                continue
            term = reply.header.raft_term
            return term if reply.acquired and term > min_term else None
        return None

    async def transfer(self, leader_id: str) -> None:
        # No target: the leader hands over to its most up-to-date follower.
        request = cluster_pb2.TransferLeadershipRequest()
        await (
            self.nodes[leader_id]
            .cluster()
            .TransferLeadership(request, timeout=CALL_TIMEOUT, metadata=ADMIN_METADATA)
        )

    # -- throughput --------------------------------------------------------------------

    async def use_leader(self) -> None:
        leader, _ = await self.settled()
        self._leader_stub = self.nodes[leader].stub()

    async def acquire(self, name: str, holder: str) -> Grant:
        assert self._leader_stub is not None
        reply = await self._leader_stub.Acquire(
            lease_pb2.AcquireRequest(
                name=name,
                holder_id=holder,
                ttl=Duration(seconds=LEASE_TTL),
                # As marquee_lease sends: the server keeps it for deduplication.
                request_id=uuid.uuid4().hex,
            ),
            timeout=CALL_TIMEOUT,
        )
        return Grant(name, reply.acquired, reply.lease.holder_id, reply.lease.token)

    async def renew(self, grant: Grant) -> bool:
        assert self._leader_stub is not None
        reply = await self._leader_stub.Renew(
            lease_pb2.RenewRequest(name=grant.name, holder_id=grant.holder, token=grant.token),
            timeout=CALL_TIMEOUT,
        )
        return reply.renewed

    async def open_keepalive(self) -> MarqueeKeepAlive:
        assert self._leader_stub is not None
        return MarqueeKeepAlive(self._leader_stub.KeepAlive(timeout=STREAM_TIMEOUT))


class MarqueeKeepAlive:
    """One KeepAlive stream: the server answers each request, in order."""

    def __init__(
        self,
        call: grpc.aio.StreamStreamCall[lease_pb2.KeepAliveRequest, lease_pb2.KeepAliveResponse],
    ) -> None:
        self.call = call

    async def renew(self, grant: Grant) -> bool:
        request = lease_pb2.KeepAliveRequest(
            name=grant.name, holder_id=grant.holder, token=grant.token
        )
        # A stream has no per-message deadline: bound each exchange ourselves.
        async with asyncio.timeout(CALL_TIMEOUT):
            await self.call.write(request)
            reply = await self.call.read()
        if not isinstance(reply, lease_pb2.KeepAliveResponse):  # grpc.aio.EOF
            raise RuntimeError("the KeepAlive stream ended")
        return reply.alive

    async def close(self) -> None:
        self.call.cancel()
