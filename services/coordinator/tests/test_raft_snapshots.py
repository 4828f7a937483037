"""Log compaction writes the full dump off the tick thread (raft_snapshots.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import pickle
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from coordinator_cluster import free_port
from pysyncobj.config import SERIALIZER_STATE
from pysyncobj.serializer import Serializer

from marquee_coordinator.raft_config import FAST_TIMING, NodeConfig
from marquee_coordinator.raft_node import LeaseNode
from marquee_coordinator.raft_snapshots import BackgroundSerializer
from marquee_coordinator.state import Acquire, Epoch, Lease, LeaseState

GATE = threading.Event()


class Gated:
    """Pickles only once GATE is set: a dump that takes as long as the test wants."""

    def __reduce__(self) -> tuple[Any, ...]:
        assert GATE.wait(10)
        return (str, ("gated",))


@pytest.fixture(autouse=True)
def open_gate() -> Any:
    GATE.clear()
    yield
    GATE.set()  # never leave a writer thread waiting


def finished(serializer: BackgroundSerializer) -> tuple[int, Any]:
    deadline = time.monotonic() + 10
    while (status := serializer.checkSerializing())[0] == SERIALIZER_STATE.SERIALIZING:
        assert time.monotonic() < deadline, "the dump was never written"
        time.sleep(0.005)
    return status


def state_with(leases: int) -> LeaseState:
    state = LeaseState()
    for n in range(leases):
        name = f"jobs/{n}"
        state.leases[name] = Lease(name, f"holder-{n}", n + 1, 30.0, n + 1, acquired_revision=n + 1)
        state.tokens[name] = n + 1
    state.revision = leases
    return state


def test_the_dump_is_pysyncobjs_format_and_reads_back(tmp_path: Path) -> None:
    dump = tmp_path / "raft.dump"
    serializer = BackgroundSerializer(str(dump), 1024)
    state = state_with(50)
    data = ([{}, {"state": state}], (b"entry", 10, 2), (b"entry", 9, 2), {"node-a", "node-b"})
    assert serializer.checkSerializing() == (SERIALIZER_STATE.NOT_SERIALIZING, None)
    serializer.serialize(data, 10)
    assert finished(serializer) == (SERIALIZER_STATE.SUCCESS, 10)
    assert serializer.checkSerializing() == (SERIALIZER_STATE.NOT_SERIALIZING, None)

    # What pysyncobj's own Serializer reads, at a restart or on a follower.
    loaded = Serializer(str(dump), 1024, False, None, None, None).deserialize()
    assert loaded[1:] == data[1:]
    assert loaded[0][1]["state"].leases == state.leases
    assert loaded[0][1]["state"].tokens == state.tokens
    with gzip.open(dump) as g:  # gzip of a pickle, as pysyncobj writes it
        assert pickle.load(g)[1:] == data[1:]
    assert not (tmp_path / "raft.dump.tmp").exists()


def test_while_the_dump_is_written_it_is_not_sent_and_the_old_one_stays(tmp_path: Path) -> None:
    dump = tmp_path / "raft.dump"
    serializer = BackgroundSerializer(str(dump), 1024)
    serializer.serialize(([{}, {"old": 1}], None, None, set()), 1)
    finished(serializer)
    old = dump.read_bytes()

    serializer.serialize(([{}, {"new": Gated()}], None, None, set()), 2)
    serializer.serialize(([{}, {"ignored": 1}], None, None, set()), 3)  # one at a time
    assert serializer.checkSerializing() == (SERIALIZER_STATE.SERIALIZING, 2)
    assert serializer.getTransmissionData("follower") is None
    assert dump.read_bytes() == old
    GATE.set()
    assert finished(serializer) == (SERIALIZER_STATE.SUCCESS, 2)
    data, first, last = serializer.getTransmissionData("follower")
    assert (first, last) == (True, False)
    assert data == dump.read_bytes()[:1024]


def test_a_dump_that_cannot_be_written_fails_and_the_next_one_is_tried(tmp_path: Path) -> None:
    serializer = BackgroundSerializer(str(tmp_path / "missing" / "raft.dump"), 1024)
    serializer.serialize(([{}, {}], None, None, set()), 5)
    assert finished(serializer) == (SERIALIZER_STATE.FAILED, 5)
    (tmp_path / "missing").mkdir()
    serializer.serialize(([{}, {}], None, None, set()), 6)
    assert finished(serializer) == (SERIALIZER_STATE.SUCCESS, 6)


def test_a_dump_received_from_the_leader_is_not_overwritten_by_an_older_one(
    tmp_path: Path,
) -> None:
    dump = tmp_path / "raft.dump"
    serializer = BackgroundSerializer(str(dump), 1024)
    serializer.serialize(([{}, {"ours": Gated()}], None, None, set()), 1)
    received = gzip.compress(pickle.dumps(([{}, {"leaders": 1}], None, None, set())))
    accepted: list[bool] = []
    receiver = threading.Thread(
        target=lambda: accepted.append(serializer.setTransmissionData((received, True, True)))
    )
    receiver.start()
    receiver.join(0.2)
    assert receiver.is_alive()  # waits for our own write to finish first
    GATE.set()
    receiver.join(10)
    assert accepted == [True]
    assert dump.read_bytes() == received
    assert serializer.checkSerializing() == (SERIALIZER_STATE.NOT_SERIALIZING, None)


def test_a_snapshot_of_the_state_does_not_follow_later_commands() -> None:
    state = state_with(3)
    state.epoch = Epoch(term=1, leader="a")
    snapshot = state.snapshot()
    for name, value in vars(state).items():
        if isinstance(value, dict | list | set) or hasattr(value, "append"):
            assert getattr(snapshot, name) is not value, name  # every container copied
    before = pickle.dumps(snapshot)
    state.apply(Acquire("jobs/new", "h", 10.0, "r-1", epoch=1))
    assert "jobs/new" in state.leases
    assert len(state.history) == 1
    assert "jobs/new" not in snapshot.leases
    assert pickle.dumps(snapshot) == before
    assert snapshot.history.maxlen == state.history.maxlen


async def test_the_tick_thread_keeps_ticking_while_a_large_dump_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The heartbeat thread is not the one that writes (it used to be, for ~1 s here)."""
    written: list[tuple[float, float]] = []
    write = BackgroundSerializer._write

    def timed_write(self: BackgroundSerializer, data: Any) -> None:
        began = time.monotonic()
        write(self, data)
        written.append((began, time.monotonic()))

    monkeypatch.setattr(BackgroundSerializer, "_write", timed_write)
    config = NodeConfig(
        node_id=1,
        raft_address=f"127.0.0.1:{free_port()}",
        peers=(),
        data_dir=tmp_path,
        cluster_secret=None,
        allow_insecure=True,
        client_address="127.0.0.1:1",
        timing=dataclasses.replace(FAST_TIMING, compaction_min_entries=20),
    )
    node = LeaseNode(config)
    ticks: list[float] = []
    node._raft.addOnTickCallback(lambda: ticks.append(time.monotonic()))
    try:
        async with asyncio.timeout(10):
            while True:
                try:
                    await node.acquire("first", "h", 30.0)
                    break
                except Exception:  # not serving yet
                    await asyncio.sleep(0.05)
        with node._leases.lock:  # a large state, as after a busy hour
            big = state_with(100_000)
            node._leases.state.leases.update(big.leases)
            node._leases.state.tokens.update(big.tokens)
        async with asyncio.timeout(30):
            for n in range(25):  # past compaction_min_entries
                await node.acquire(f"more/{n}", "h", 30.0)
            while not written:
                await asyncio.sleep(0.05)
    finally:
        node.close()
    began, ended = written[0]
    during = [t for t in ticks if began < t < ended]
    assert ended - began > 0.1, "the dump was too small to tell"
    assert len(during) >= 3, (ended - began, len(during))


def test_closing_waits_for_a_dump_being_written(tmp_path: Path) -> None:
    serializer = BackgroundSerializer(str(tmp_path / "raft.dump"), 1024)
    assert serializer.finish(timeout=0.01)  # nothing being written
    serializer.serialize(([{}, {"slow": Gated()}], None, None, set()), 1)
    assert not serializer.finish(timeout=0.05)
    GATE.set()
    assert serializer.finish(timeout=10)
    assert (tmp_path / "raft.dump").exists()
