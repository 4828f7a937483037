"""Why `marquee up` keeps a data dir's Raft ports (port_record): the failure it prevents.

The coordinator's pysyncobj configuration keeps the voter set in its full dump
(written at each log compaction: after five minutes of a suite's run) and in
membership entries of its journal. Restarted on other ports with that data,
the nodes count their old addresses as voters and never elect a leader; on
the same ports they do. Compaction is made immediate here; the rest is the
coordinator's own configuration (NodeConfig.syncobj_conf).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from pysyncobj import SyncObj, SyncObjConsumer, replicated

from marquee_coordinator.raft_config import FAST_TIMING, NodeConfig
from marquee_localservers import free_port

pytestmark = pytest.mark.timeout(120)

COMPACT_AT_ONCE = replace(FAST_TIMING, compaction_min_entries=2, compaction_min_time=0.2)
LEADER_SECONDS = 15.0
# Long enough for several election rounds at FAST_TIMING, where a leader takes
# well under a second: the bad restart must still have none after it.
NO_LEADER_SECONDS = 6.0


class Counter(SyncObjConsumer):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.value = 0

    @replicated  # type: ignore[untyped-decorator]
    def bump(self) -> int:
        self.value += 1
        return self.value


@contextmanager
def cluster(data_dir: Path, addresses: list[str]) -> Iterator[list[tuple[SyncObj, Counter]]]:
    nodes: list[tuple[SyncObj, Counter]] = []
    try:
        for node_id, address in enumerate(addresses, start=1):
            config = NodeConfig(
                node_id=node_id,
                raft_address=address,
                peers=tuple(a for a in addresses if a != address),
                data_dir=data_dir,
                cluster_secret="s3cret",
                timing=COMPACT_AT_ONCE,
            )
            config.node_dir.mkdir(parents=True, exist_ok=True)
            counter = Counter()
            conf = config.syncobj_conf()
            node = SyncObj(address, list(config.peers), conf=conf, consumers=[counter])
            nodes.append((node, counter))
        yield nodes
    finally:
        for node, _ in nodes:
            node.destroy()


def has_leader(nodes: list[tuple[SyncObj, Counter]], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(node._isLeader() for node, _ in nodes):
            return True
        time.sleep(0.05)
    return False


def addresses() -> list[str]:
    return [f"127.0.0.1:{free_port()}" for _ in range(3)]


def run_until_compacted(data_dir: Path, first: list[str]) -> None:
    with cluster(data_dir, first) as nodes:
        assert has_leader(nodes, LEADER_SECONDS)
        _, counter = nodes[0]
        deadline = time.monotonic() + LEADER_SECONDS
        while not all((data_dir / f"node-{n}" / "raft.dump").exists() for n in (1, 2, 3)):
            assert time.monotonic() < deadline, "no full dump was written"
            counter.bump(sync=True, timeout=5)
            time.sleep(0.1)


def test_after_a_compaction_other_ports_never_elect_a_leader(tmp_path: Path) -> None:
    run_until_compacted(tmp_path, addresses())
    with cluster(tmp_path, addresses()) as moved:
        assert not has_leader(moved, NO_LEADER_SECONDS)


def test_after_a_compaction_the_same_ports_elect_a_leader(tmp_path: Path) -> None:
    first = addresses()
    run_until_compacted(tmp_path, first)
    with cluster(tmp_path, first) as same:
        assert has_leader(same, LEADER_SECONDS)
