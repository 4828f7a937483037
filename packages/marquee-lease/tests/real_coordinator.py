"""A real 3-node coordinator cluster: `python -m marquee_coordinator` processes on loopback.

Spawned the way `marquee up` spawns them (settings in MARQUEE_COORDINATOR_*),
with the short "fast" Raft timeouts.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RealNode:
    node_id: int
    grpc_address: str
    raft_address: str
    peers: list[str]
    data_dir: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        prefix = "MARQUEE_COORDINATOR_"
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
        env = os.environ | {prefix + k: v for k, v in settings.items()}
        with (self.data_dir / "node.log").open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "marquee_coordinator"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        """kill -9: a crash, nothing flushed or handed over."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        path = self.data_dir / "node.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class RealCluster:
    def __init__(self, root: Path, size: int = 3) -> None:
        rafts = [f"127.0.0.1:{free_port()}" for _ in range(size)]
        self.nodes = [
            RealNode(
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

    def by_address(self, grpc_address: str) -> RealNode:
        return next(n for n in self.nodes if n.grpc_address == grpc_address)

    def start(self) -> None:
        for node in self.nodes:
            node.start()

    def close(self) -> None:
        for node in self.nodes:
            node.kill()

    def logs(self) -> str:
        return "\n".join(f"--- node {n.node_id}\n{n.log_tail()}" for n in self.nodes)
