"""A real 3-node coordinator: `python -m marquee_coordinator` processes on loopback.

Spawned the way `marquee up` spawns them (settings in MARQUEE_COORDINATOR_*),
with the short "fast" Raft timings so a lease can live for about a second.
The pattern of services/coordinator/tests/grpc_cluster.py, kept here so test
folders never import each other.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from marquee_lease import CoordinatorClient, CoordinatorError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Node:
    node_id: int
    grpc_address: str
    raft_address: str
    peers: list[str]
    data_dir: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        settings = {
            "NODE_ID": str(self.node_id),
            "GRPC_HOST": "127.0.0.1",
            "GRPC_PORT": self.grpc_address.rpartition(":")[2],
            "METRICS_PORT": "-1",
            "RAFT_ADDRESS": self.raft_address,
            "PEERS": ",".join(self.peers),
            "DATA_DIR": str(self.data_dir),
            "CLUSTER_SECRET": "test-secret",
            "RAFT_TIMING": "fast",
            "LOG_FORMAT": "console",
            "SHUTDOWN_GRACE_SECONDS": "2",
        }
        env = os.environ | {f"MARQUEE_COORDINATOR_{k}": v for k, v in settings.items()}
        with (self.data_dir / "node.log").open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "marquee_coordinator"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def log_tail(self, lines: int = 15) -> str:
        path = self.data_dir / "node.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class Cluster:
    def __init__(self, root: Path, size: int = 3) -> None:
        rafts = [f"127.0.0.1:{free_port()}" for _ in range(size)]
        self.nodes = [
            Node(
                node_id=i + 1,
                grpc_address=f"127.0.0.1:{free_port()}",
                raft_address=raft,
                peers=[p for p in rafts if p != raft],
                data_dir=root / f"node-{i + 1}",
            )
            for i, raft in enumerate(rafts)
        ]

    @property
    def endpoints(self) -> list[str]:
        return [n.grpc_address for n in self.nodes]

    def start(self) -> None:
        for node in self.nodes:
            node.start()

    def close(self) -> None:
        for node in self.nodes:
            node.kill()

    def logs(self) -> str:
        return "\n".join(f"--- node {n.node_id}\n{n.log_tail()}" for n in self.nodes)

    async def wait_for_leader(self, within: float = 30.0) -> None:
        """Until a leader with a quorum answers (the nodes elect one shortly after start)."""
        async with CoordinatorClient(self.endpoints, timeout=1.0) as client:
            try:
                async with asyncio.timeout(within):
                    while True:
                        try:
                            status = await client.cluster_status()
                            if status.header.leader_address and status.has_quorum:
                                return
                        except CoordinatorError:
                            pass
                        await asyncio.sleep(0.1)
            except TimeoutError:
                raise TimeoutError(f"no coordinator leader in {within} s\n{self.logs()}") from None
