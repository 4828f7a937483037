"""Real coordinator node processes for fault tests: spawn, signal, and talk to them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NODE_SCRIPT = Path(__file__).with_name("coordinator_test_node.py")


# Ports this process has handed out: the kernel may give a just-released port
# again at once, and two members of one cluster on one port cannot both bind
# (seen in CI: a fault run whose nodes 1 and 2 had the same Raft address).
_handed_out: set[int] = set()


def free_port() -> int:
    """A port free now and not handed out before in this process."""
    for _ in range(1000):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("no port left that this process has not handed out")


class NodeCallError(Exception):
    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__(f"{answer['error']}: {answer.get('message')}")
        self.kind: str = answer["error"]
        self.answer = answer


@dataclass
class NodeProcess:
    node_id: int
    raft_address: str
    control_port: int
    data_dir: Path
    peers: list[str]
    secret: str
    compaction_min_entries: int = 5000
    local_renewal: bool = True  # LOCAL_RENEWAL, as in production
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    stopped: bool = False  # SIGSTOPped: its control port accepts but never answers

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"node-{self.node_id}.log"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            str(NODE_SCRIPT),
            f"--node-id={self.node_id}",
            f"--raft={self.raft_address}",
            f"--peers={','.join(self.peers)}",
            f"--data-dir={self.data_dir}",
            f"--control-port={self.control_port}",
            f"--compaction-min-entries={self.compaction_min_entries}",
        ]
        if self.secret:
            command.append(f"--secret={self.secret}")
        command.append("--local-renewal" if self.local_renewal else "--no-local-renewal")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"node {self.node_id} exited:\n{self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.control_port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"node {self.node_id} did not come up:\n{self.log_tail()}")

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        os.kill(self.process.pid, sig)
        if sig in (signal.SIGSTOP, signal.SIGCONT):
            self.stopped = sig == signal.SIGSTOP

    def kill(self) -> None:
        """kill -9, as a crash: nothing is flushed or closed by the node."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a stopped process would linger
            self.process.kill()
            self.process.wait(10)
        self.process = None
        self.stopped = False

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def call(self, op: str, timeout: float = 10.0, **args: Any) -> Any:
        """One control request; raises NodeCallError for the node's typed errors."""
        with socket.create_connection(("127.0.0.1", self.control_port), timeout=timeout) as sock:
            sock.sendall(json.dumps({"op": op, **args}).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"node {self.node_id} closed the control connection")
                data += chunk
        answer = json.loads(data)
        if "error" in answer:
            raise NodeCallError(answer)
        return answer["ok"]

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.call("status", timeout=1.0)
        return status


class Cluster:
    def __init__(
        self,
        root: Path,
        size: int = 3,
        secret: str = "test-secret",
        compaction_min_entries: int = 5000,
        local_renewal: bool = True,
    ) -> None:
        addresses = [f"127.0.0.1:{free_port()}" for _ in range(size)]
        self.nodes = [
            NodeProcess(
                node_id=i + 1,
                raft_address=address,
                control_port=free_port(),
                data_dir=root / f"n{i + 1}",
                peers=[a for a in addresses if a != address],
                secret=secret,
                compaction_min_entries=compaction_min_entries,
                local_renewal=local_renewal,
            )
            for i, address in enumerate(addresses)
        ]

    def start(self, nodes: list[NodeProcess] | None = None) -> None:
        for node in nodes or self.nodes:
            node.start()
        for node in nodes or self.nodes:
            node.wait_ready()

    def by_address(self, raft_address: str) -> NodeProcess:
        return next(n for n in self.nodes if n.raft_address == raft_address)

    def wait_serving_leader(self, timeout: float = 15.0) -> NodeProcess:
        """The running node that serves leader-only calls, once it has been elected."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for node in self.nodes:
                if not node.running() or node.stopped:
                    continue
                try:
                    if node.status()["serving"]:
                        return node
                except (OSError, NodeCallError):
                    pass
            time.sleep(0.02)
        logs = "\n".join(f"--- node {n.node_id}\n{n.log_tail(10)}" for n in self.nodes)
        raise TimeoutError(f"no serving leader within {timeout} s\n{logs}")

    def followers(self, leader: NodeProcess) -> list[NodeProcess]:
        return [n for n in self.nodes if n is not leader and n.running()]

    def close(self) -> None:
        for node in self.nodes:
            node.kill()
