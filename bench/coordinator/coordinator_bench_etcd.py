"""etcd (Debian `etcd-server`) as the peer: a 3-member cluster on loopback, driven with aetcd.

The bench starts its own members in a temp dir with the heartbeat and election
timeout it is given (run.py matches them to Marquee's timing profile); the
system service is never used. etcd draws each election timeout in
[election, 2 x election) in whole heartbeat ticks.

Lease analogues of Marquee's calls, as etcd's own election recipe does them:
Acquire is LeaseGrant, then a Txn "if the key does not exist, put it with the
lease"; the fencing token is the key's create_revision. Renewal: etcd has only
LeaseKeepAlive, a stream. The stream figure writes each renewal on a long-lived
stream (as etcd clients keep one); the unary figure opens a fresh stream per
renewal (`etcdctl lease keep-alive --once`, aetcd's refresh_lease), the nearest
thing etcd has to Marquee's unary Renew. (LeaseTimeToLive only reads a lease.)
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import aetcd
import grpc
from aetcd import rpc
from coordinator.coordinator_bench_measure import (
    LEASE_TTL,
    PROBE_ATTEMPT_SECONDS,
    PROBE_CHANNEL_OPTIONS,
    Grant,
    first_write,
)

from marquee_localservers import free_port
from marquee_localservers.spawning import child_argv

CALL_TIMEOUT = 5
# A renewal stream lives for one throughput figure; the deadline only bounds a hang.
STREAM_TIMEOUT = 300.0
PROBE_REQUEST = rpc.PutRequest(key=b"bench/probe", value=b"x")


def find_etcd() -> str:
    path = shutil.which("etcd")
    if path is None:
        raise SystemExit("etcd not found: run scripts/ensure_bench_tools.sh (or make bench)")
    return path


class EtcdCluster:
    """`async with EtcdCluster() as cluster:`; stops every member on exit."""

    label = "etcd"

    def __init__(self, *, heartbeat_ms: int = 100, election_ms: int = 1000) -> None:
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        self.binary = find_etcd()
        self._tmp = tempfile.TemporaryDirectory(prefix="bench-etcd-")
        self.data_dir = Path(self._tmp.name)
        self.node_ids: Sequence[str] = ["e1", "e2", "e3"]
        self.client_ports = {n: free_port() for n in self.node_ids}
        self.peer_urls = {n: f"http://127.0.0.1:{free_port()}" for n in self.node_ids}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.clients: dict[str, aetcd.Client] = {}
        # etcd's numeric member id -> our name, learned from MemberList.
        self._names: dict[int, str] = {}
        self._leader_client: aetcd.Client | None = None

    async def __aenter__(self) -> EtcdCluster:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for client in self.clients.values():
            await client.close()
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._tmp.cleanup()

    # -- processes -------------------------------------------------------------------

    def spawn(self, node_id: str) -> None:
        client_url = f"http://127.0.0.1:{self.client_ports[node_id]}"
        initial = ",".join(f"{n}={url}" for n, url in self.peer_urls.items())
        command = [
            self.binary,
            f"--name={node_id}",
            f"--data-dir={self.data_dir / node_id}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={self.peer_urls[node_id]}",
            f"--initial-advertise-peer-urls={self.peer_urls[node_id]}",
            f"--initial-cluster={initial}",
            "--initial-cluster-token=bench",
            f"--heartbeat-interval={self.heartbeat_ms}",
            f"--election-timeout={self.election_ms}",
            # Ignored on a restart: the member then rejoins from its data dir.
            "--initial-cluster-state=new",
            "--logger=zap",
            "--log-level=warn",
        ]
        with (self.data_dir / f"{node_id}.log").open("ab") as log:
            self.processes[node_id] = subprocess.Popen(
                # Dies with the bench (death signal), started without a fork.
                child_argv(command),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self, node_id: str) -> None:
        self.processes[node_id].kill()
        self.processes[node_id].wait()
        self._forget_client(node_id)

    def terminate(self, node_id: str) -> None:
        self.processes[node_id].terminate()

    async def wait_exit(self, node_id: str) -> None:
        while self.processes[node_id].poll() is None:
            await asyncio.sleep(0.05)
        self._forget_client(node_id)

    def _forget_client(self, node_id: str) -> None:
        # A fresh client for the restarted member instead of the old channel's backoff.
        client = self.clients.pop(node_id, None)
        if client is not None:
            asyncio.get_running_loop().create_task(client.close())

    async def client(self, node_id: str) -> aetcd.Client:
        if node_id not in self.clients:
            client = aetcd.Client(
                "127.0.0.1",
                self.client_ports[node_id],
                timeout=CALL_TIMEOUT,
                # The same reconnect options as Marquee's channels (PROBE_CHANNEL_OPTIONS).
                options=dict(PROBE_CHANNEL_OPTIONS),
            )
            await client.connect()
            self.clients[node_id] = client
        return self.clients[node_id]

    # -- cluster state -----------------------------------------------------------------

    async def _leader(self) -> str | None:
        """The leader every member names, or None while they do not all agree."""
        leaders = set()
        for node_id in self.node_ids:
            if self.processes[node_id].poll() is not None:
                raise RuntimeError(f"etcd member {node_id} exited")
            client = await self.client(node_id)
            try:
                status = await client.maintenancestub.Status(rpc.StatusRequest(), timeout=0.5)
            except rpc.AioRpcError:
                return None
            leaders.add(status.leader)
        if len(leaders) != 1 or 0 in leaders:
            return None
        leader_id = leaders.pop()
        if leader_id not in self._names:
            members = await (await self.client(self.node_ids[0])).clusterstub.MemberList(
                rpc.MemberListRequest(), timeout=CALL_TIMEOUT
            )
            self._names = {m.ID: m.name for m in members.members}
        return self._names[leader_id]

    async def settled(self) -> tuple[str, int]:
        deadline = asyncio.get_running_loop().time() + 60
        while (leader := await self._leader()) is None:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("the etcd cluster did not settle within 60 s")
            await asyncio.sleep(0.05)
        return leader, await first_write(self, self.node_ids, min_term=0)

    async def write_once(self, node_id: str, node_ids: Sequence[str], min_term: int) -> int | None:
        """Put the probe key through `node_id` (a follower forwards it to the leader)."""
        client = await self.client(node_id)
        try:
            reply = await client.kvstub.Put(PROBE_REQUEST, timeout=PROBE_ATTEMPT_SECONDS)
        except rpc.AioRpcError:
            return None
        term = int(reply.header.raft_term)
        return term if term > min_term else None

    async def transfer(self, leader_id: str) -> None:
        """MoveLeader (etcdctl move-leader) to the next member; it answers once moved."""
        target = next(n for n in self.node_ids if n != leader_id)
        target_id = next(i for i, name in self._names.items() if name == target)
        client = await self.client(leader_id)
        await client.maintenancestub.MoveLeader(
            rpc.MoveLeaderRequest(targetID=target_id), timeout=CALL_TIMEOUT
        )

    # -- throughput --------------------------------------------------------------------

    async def use_leader(self) -> None:
        # Straight to the leader, as Marquee's figures are: no forwarding hop.
        leader, _ = await self.settled()
        self._leader_client = await self.client(leader)

    async def acquire(self, name: str, holder: str) -> Grant:
        client = self._leader_client
        assert client is not None
        lease = await client.lease(LEASE_TTL)
        ops = client.transactions
        key = name.encode()
        succeeded, responses = await client.transaction(
            compare=[ops.create(key) == 0],
            success=[ops.put(key, holder.encode(), lease=lease.id), ops.get(key)],
            failure=[ops.get(key)],
        )
        # The Get at the end of either branch: [(value, metadata)] for the key.
        found: list[tuple[bytes, Any]] = responses[-1]
        if not found:
            return Grant(name, bool(succeeded), "", 0)
        value, meta = found[0]
        return Grant(name, bool(succeeded), value.decode(), meta.create_revision, meta.lease)

    async def renew(self, grant: Grant) -> bool:
        client = self._leader_client
        assert client is not None
        # TTL 0 in the answer: the lease is gone (expired or revoked).
        reply = await client.refresh_lease(grant.lease_id)
        return reply is not None and reply.TTL > 0

    async def open_keepalive(self) -> EtcdKeepAlive:
        client = self._leader_client
        assert client is not None
        return EtcdKeepAlive(client.leasestub.LeaseKeepAlive(timeout=STREAM_TIMEOUT))


class EtcdKeepAlive:
    """One long-lived LeaseKeepAlive stream, as etcd's own clients keep."""

    def __init__(self, call: Any) -> None:
        self.call = call

    async def renew(self, grant: Grant) -> bool:
        # A stream has no per-message deadline: bound each exchange ourselves.
        async with asyncio.timeout(CALL_TIMEOUT):
            await self.call.write(rpc.LeaseKeepAliveRequest(ID=grant.lease_id))
            reply = await self.call.read()
        if reply is grpc.aio.EOF:
            raise RuntimeError("the LeaseKeepAlive stream ended")
        # TTL 0 in the answer: the lease is gone (expired or revoked).
        return int(reply.TTL) > 0

    async def close(self) -> None:
        self.call.cancel()
