"""gRPC probes for test_partition, run inside a network namespace with `ip netns exec`.

The test process lives in the host namespace and cannot reach the nodes, which
listen on addresses that exist only inside the namespaces the test created. So
each step runs as `python netns_probe.py <step> '<json args>'` in the right
namespace and prints one JSON object as its last line of output.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration

from marquee.coordinator.v1 import cluster_pb2, cluster_pb2_grpc, lease_pb2, lease_pb2_grpc

Answer = dict[str, Any]


def ttl(seconds: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


def leases(address: str) -> lease_pb2_grpc.LeaseServiceStub:
    return lease_pb2_grpc.LeaseServiceStub(grpc.insecure_channel(address))


def status(address: str) -> cluster_pb2.StatusResponse | None:
    try:
        return cluster_pb2_grpc.ClusterServiceStub(grpc.insecure_channel(address)).Status(
            cluster_pb2.StatusRequest(), timeout=1
        )
    except grpc.RpcError:
        return None


def serving_leader(addresses: list[str], timeout: float) -> str:
    """The address of a member that says it leads with a quorum, and serves a write."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for address in addresses:
            s = status(address)
            if s is not None and s.member.role == cluster_pb2.MEMBER_ROLE_LEADER and s.has_quorum:
                try:  # the epoch is committed: it serves
                    leases(address).Get(lease_pb2.GetRequest(name="probe"), timeout=1)
                except grpc.RpcError:
                    continue
                return address
        time.sleep(0.05)
    raise TimeoutError(f"no serving leader among {addresses}")


def setup(addresses: list[str], name: str, holder: str, seconds: float) -> Answer:
    leader = serving_leader(addresses, 30)
    got = leases(leader).Acquire(
        lease_pb2.AcquireRequest(name=name, holder_id=holder, ttl=ttl(seconds)), timeout=5
    )
    assert got.acquired
    return {"leader": leader, "term": got.header.raft_term, "token": got.lease.token}


def isolated(address: str, name: str, holder: str, token: int, seconds: float) -> Answer:
    """Hammer the cut-off old leader with grants and renewals for `seconds`; report each answer."""
    stub = leases(address)
    answers: list[Answer] = []
    until = time.monotonic() + seconds
    n = 0
    while time.monotonic() < until:
        n += 1
        grab = lease_pb2.AcquireRequest(name=f"grab-{n}", holder_id="iso", ttl=ttl(2.0))
        renew = lease_pb2.RenewRequest(name=name, holder_id=holder, token=token)
        # The renewal first: right after the cut it may still be inside the leader lease.
        # CLOCK_MONOTONIC is one clock for every network namespace of the machine.
        sent = time.monotonic()
        try:
            renewed = stub.Renew(renew, timeout=1).renewed
            answers.append({"call": "renew", "ok": renewed, "sent": sent})
        except grpc.RpcError as error:
            answers.append({"call": "renew", "code": error.code().name, "sent": sent})
        try:
            answers.append({"call": "acquire", "ok": stub.Acquire(grab, timeout=1).acquired})
        except grpc.RpcError as error:
            answers.append({"call": "acquire", "code": error.code().name})
        time.sleep(0.1)
    s = status(address)
    role = cluster_pb2.MemberRole.Name(s.member.role) if s is not None else None
    return {"answers": answers, "role_at_end": role}


def majority(addresses: list[str], old: str, name: str, seconds: float) -> Answer:
    """The other side elects a leader, keeps granting, and the old lease expires there."""
    started = time.monotonic()
    leader = serving_leader(addresses, 15)
    elected = time.monotonic() - started
    stub = leases(leader)
    fresh = stub.Acquire(
        lease_pb2.AcquireRequest(name="majority", holder_id="m", ttl=ttl(seconds)), timeout=5
    )
    # The cut-off holder cannot renew: its lease expires a TTL after the new epoch.
    deadline = time.monotonic() + 4 * seconds + 5
    while True:
        took = stub.Acquire(
            lease_pb2.AcquireRequest(name=name, holder_id="b", ttl=ttl(seconds)), timeout=5
        )
        if took.acquired or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert old not in addresses
    return {
        "leader": leader,
        "elected_after": elected,
        "fresh_acquired": fresh.acquired,
        "term": took.header.raft_term,
        "taken_over": took.acquired,
        "taken_at": time.monotonic(),  # after the grant committed
        "token": took.lease.token,
    }


def healed(old: str, addresses: list[str], timeout: float) -> Answer:
    """The old leader rejoins as a follower; nothing it was asked is committed.

    Its return may cost one more election (while cut off it campaigned at ever
    higher terms), which its shorter log cannot win: the leader is then another
    member of the majority side, so it is looked up again here.
    """
    deadline = time.monotonic() + timeout
    s = None
    while time.monotonic() < deadline:
        s = status(old)
        leader_address = s.header.leader_address if s is not None else ""
        if s is not None and s.member.role == cluster_pb2.MEMBER_ROLE_FOLLOWER and leader_address:
            break
        time.sleep(0.05)
    assert s is not None
    leader = serving_leader(addresses, timeout)
    grabbed = leases(leader).List(lease_pb2.ListRequest(prefix="grab-"), timeout=5)
    return {
        "role": cluster_pb2.MemberRole.Name(s.member.role),
        "leader_address": s.header.leader_address,
        "leader_now": leader,
        "term": s.header.raft_term,
        "grabbed": [lease.name for lease in grabbed.leases],
    }


def main() -> None:
    step, args = sys.argv[1], json.loads(sys.argv[2])
    steps: dict[str, Callable[..., Answer]] = {
        "setup": setup,
        "isolated": isolated,
        "majority": majority,
        "healed": healed,
    }
    print(json.dumps(steps[step](**args)), flush=True)


if __name__ == "__main__":
    main()
