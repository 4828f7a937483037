"""Real coordinator processes (`python -m marquee_coordinator`) over gRPC: redirects,
headers, membership 1 -> 3 -> 5 -> 1, restarts, leadership transfer and SIGTERM handover."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from grpc_cluster import ADMIN, GrpcNode, member_ids, wait_for_leader, wait_until_serving

from marquee.coordinator.v1 import cluster_pb2, lease_pb2
from marquee_coordinator.raft_config import FAST_TIMING

pytestmark = pytest.mark.timeout(150)


def ttl(value: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(int(value * 1e9))
    return d


@pytest.fixture
def nodes() -> Iterator[list[GrpcNode]]:
    started: list[GrpcNode] = []
    try:
        yield started
    finally:
        for node in started:
            node.kill()


def three(root: Path, nodes: list[GrpcNode]) -> list[GrpcNode]:
    nodes += [GrpcNode(i, root / f"n{i}") for i in (1, 2, 3)]
    for node in nodes:
        node.peers = [n.raft_address for n in nodes if n is not node]
        node.start()
    wait_until_serving(nodes)
    return nodes


def acquire(node: GrpcNode, name: str, seconds: float = 5.0) -> lease_pb2.AcquireResponse:
    return node.leases.Acquire(
        lease_pb2.AcquireRequest(name=name, holder_id="h", ttl=ttl(seconds)), timeout=5
    )


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.01)


def silent_for(leader: GrpcNode, member: GrpcNode) -> float:
    """How long the leader has not heard from `member` (its Status' last_contact)."""
    view = next(m for m in leader.status().members if m.id == member.id)
    return view.last_contact.ToNanoseconds() / 1e9 if view.HasField("last_contact") else 0.0


def time_to_first_write(nodes: list[GrpcNode], old: GrpcNode, name: str) -> tuple[float, GrpcNode]:
    """From now until some other node grants an Acquire: what a client sees of a handover."""
    started = time.monotonic()
    while time.monotonic() - started < 10:
        for node in nodes:
            if node is old or not node.running():
                continue
            try:
                if acquire(node, name).acquired:
                    return time.monotonic() - started, node
            except grpc.RpcError:
                pass
        time.sleep(0.001)
    raise TimeoutError("no write after the handover")


def test_followers_redirect_and_headers_name_the_leader(
    tmp_path: Path, nodes: list[GrpcNode]
) -> None:
    three(tmp_path, nodes)
    leader = wait_for_leader(nodes)
    follower = next(n for n in nodes if n is not leader)

    granted = acquire(leader, "job")
    assert granted.acquired
    header = granted.header
    assert (header.member_id, header.leader_id, header.leader_address) == (
        leader.id,
        leader.id,
        leader.grpc_address,
    )
    assert header.cluster_id
    assert header.raft_term >= 1
    assert header.revision >= 1

    with pytest.raises(grpc.RpcError) as raised:
        acquire(follower, "job2")
    error: grpc.Call = raised.value  # type: ignore[assignment]
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert ("x-marquee-leader", leader.grpc_address) in list(error.trailing_metadata() or ())

    status = follower.status()
    assert status.header.cluster_id == header.cluster_id
    assert status.header.leader_id == leader.id
    assert [(m.id, m.grpc_address) for m in status.members] == [
        (n.id, n.grpc_address) for n in nodes
    ]
    assert member_ids(leader) == ["1", "2", "3"]


def test_transfer_and_sigterm_hand_leadership_over_in_milliseconds(
    tmp_path: Path, nodes: list[GrpcNode]
) -> None:
    three(tmp_path, nodes)
    leader = wait_for_leader(nodes)
    target = next(n for n in nodes if n is not leader)
    acquire(leader, "warm-up", seconds=600)

    started = time.monotonic()
    moved = leader.cluster.TransferLeadership(
        cluster_pb2.TransferLeadershipRequest(target_id=target.id), timeout=5, metadata=ADMIN
    )
    rpc_ms = (time.monotonic() - started) * 1000
    assert moved.previous_leader_id == leader.id
    assert moved.header.leader_id == target.id
    write_s, writer = time_to_first_write(nodes, leader, "after-transfer")
    assert writer is target
    print(
        f"TransferLeadership answered in {rpc_ms:.1f} ms; next write {write_s * 1000:.1f} ms later"
    )

    # SIGTERM of the leader: it hands over before it stops, so writes resume at once.
    acquire(target, "warm-up-2")
    started = time.monotonic()
    target.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    write_s, writer = time_to_first_write(nodes, target, "after-sigterm")
    print(f"SIGTERM of the leader: next write on node {writer.id} after {write_s * 1000:.1f} ms")
    assert target.process is not None
    assert target.process.wait(10) == 0
    # How fast is bench/coordinator's business; here: the stop handed leadership over.
    assert "leadership handed over" in target.log_path.read_text()

    # The stopped node comes back as a follower; the lease taken before is intact.
    target.start()
    wait_until_serving(nodes)
    leader = wait_for_leader(nodes)
    got = leader.leases.Get(lease_pb2.GetRequest(name="warm-up"), timeout=5)
    assert got.found


def test_transfer_under_a_busy_writer_holds_writes_until_the_target_caught_up(
    tmp_path: Path, nodes: list[GrpcNode]
) -> None:
    """While it hands over, the leader answers new writes UNAVAILABLE (retry) instead of
    lengthening the log the target must match, so the transfer is not an election."""
    three(tmp_path, nodes)
    leader = wait_for_leader(nodes)
    codes: Counter[grpc.StatusCode] = Counter()
    stop = threading.Event()

    def write() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                acquire(leader, f"busy/{n}")
                codes[grpc.StatusCode.OK] += 1
            except grpc.RpcError as error:
                codes[error.code()] += 1

    writers = [threading.Thread(target=write) for _ in range(4)]
    for writer in writers:
        writer.start()
    try:
        wait_until(lambda: codes[grpc.StatusCode.OK] >= 20, "the writers are busy")
        started = time.monotonic()
        moved = leader.cluster.TransferLeadership(
            cluster_pb2.TransferLeadershipRequest(), timeout=5, metadata=ADMIN
        )
        rpc_s = time.monotonic() - started
        # The writers keep asking the old leader a while after it handed over.
        answered = sum(codes.values())
        wait_until(lambda: sum(codes.values()) >= answered + 20, "answers after the transfer")
    finally:
        stop.set()
        for writer in writers:
            writer.join()
    assert moved.previous_leader_id == leader.id
    # A transfer that ended in an ordinary election would name no new leader, or
    # only after the election; its duration is measured by bench/coordinator.
    assert moved.header.leader_id not in ("", leader.id)
    print(f"TransferLeadership under 4 writers: {rpc_s * 1000:.1f} ms; answers {dict(codes)}")
    allowed = {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.FAILED_PRECONDITION}
    assert set(codes) <= allowed
    assert codes[grpc.StatusCode.OK] > 0


def test_grow_one_to_five_shrink_back_and_refuse_losing_quorum(
    tmp_path: Path, nodes: list[GrpcNode]
) -> None:
    first = GrpcNode(1, tmp_path / "n1")
    nodes.append(first)
    first.start()
    wait_until_serving(nodes)
    acquire(first, "before-growth", seconds=600)

    for node_id in (2, 3, 4, 5):
        leader = wait_for_leader(nodes)
        new = GrpcNode(node_id, tmp_path / f"n{node_id}")
        added = leader.cluster.MemberAdd(
            cluster_pb2.MemberAddRequest(
                id=new.id, raft_address=new.raft_address, grpc_address=new.grpc_address
            ),
            timeout=10,
            metadata=ADMIN,
        )
        assert added.member.id == new.id
        new.peers = [m.raft_address for m in added.members if m.id != new.id]
        nodes.append(new)
        new.start()
        wait_until_serving(nodes)
        assert member_ids(new) == [n.id for n in nodes]

    leader = wait_for_leader(nodes)
    with pytest.raises(grpc.RpcError) as raised:
        leader.cluster.MemberAdd(
            cluster_pb2.MemberAddRequest(id="2", raft_address="127.0.0.1:1", grpc_address="x:1"),
            timeout=5,
            metadata=ADMIN,
        )
    assert raised.value.code() == grpc.StatusCode.ALREADY_EXISTS

    # Shrink 5 -> 3: remove two followers, then stop them.
    for _ in range(2):
        leader = wait_for_leader(nodes)
        gone = next(n for n in reversed(nodes) if n is not leader)
        leader.cluster.MemberRemove(
            cluster_pb2.MemberRemoveRequest(id=gone.id), timeout=10, metadata=ADMIN
        )
        gone.stop()
        nodes.remove(gone)
    leader = wait_for_leader(nodes)
    assert member_ids(leader) == sorted(n.id for n in nodes)

    # With one of three down, removing another live member would leave 1 of 2: refused.
    down, other = [n for n in nodes if n is not leader]
    down.kill()
    # The leader counts a voter live while it heard from it within an election timeout.
    wait_until(lambda: silent_for(leader, down) > FAST_TIMING.election_max, "down is not live")
    with pytest.raises(grpc.RpcError) as raised:
        leader.cluster.MemberRemove(
            cluster_pb2.MemberRemoveRequest(id=other.id), timeout=5, metadata=ADMIN
        )
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "quorum" in (raised.value.details() or "")

    # Membership survives a restart of every node, each started with its original peers.
    down.start()
    wait_until_serving(nodes)
    expected = sorted(n.id for n in nodes)
    for node in nodes:
        node.stop()
    for node in nodes:
        node.start()
    wait_until_serving(nodes)
    leader = wait_for_leader(nodes)
    assert member_ids(leader) == expected
    assert leader.leases.Get(lease_pb2.GetRequest(name="before-growth"), timeout=5).found

    # ... and back down to one.
    for _ in range(2):
        leader = wait_for_leader(nodes)
        gone = next(n for n in reversed(nodes) if n is not leader)
        leader.cluster.MemberRemove(
            cluster_pb2.MemberRemoveRequest(id=gone.id), timeout=10, metadata=ADMIN
        )
        gone.stop()
        nodes.remove(gone)
    (last,) = nodes
    assert member_ids(last) == [last.id]
    assert acquire(last, "after-shrink").acquired
