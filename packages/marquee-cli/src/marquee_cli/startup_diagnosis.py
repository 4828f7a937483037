"""Why a process never became SERVING, in words a start-up failure can print.

A coordinator node is SERVING once it knows a leader; when it does not, its
ClusterService/Status (answered by followers and candidates too) says which
Raft peers it tried and whether it reached them. Peers the launcher did not
give it come from its Raft log: addresses of an earlier run.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from marquee.coordinator.v1 import cluster_pb2, cluster_pb2_grpc

STATUS_DEADLINE_SECONDS = 2.0


async def coordinator_diagnosis(
    address: str, given_peers: Sequence[str], deadline: float = STATUS_DEADLINE_SECONDS
) -> str:
    """E.g. "no leader: it is a candidate at term 9; Raft peers it tried: a:1 (not connected)"."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = cluster_pb2_grpc.ClusterServiceStub(channel)
        try:
            reply = await stub.Status(cluster_pb2.StatusRequest(), timeout=deadline)
        except grpc.aio.AioRpcError as exc:
            return (
                f"no leader known; ClusterService/Status did not answer ({exc.code().name}); "
                f"Raft peers it was given: {', '.join(given_peers) or 'none'}"
            )
    return describe_status(reply, given_peers)


def describe_status(reply: cluster_pb2.StatusResponse, given_peers: Sequence[str]) -> str:
    me = reply.member.raft_address
    others = [m for m in reply.members if m.raft_address != me]
    tried = ", ".join(
        f"{m.raft_address} ({'connected' if m.connected else 'not connected'})" for m in others
    )
    role = cluster_pb2.MemberRole.Name(reply.member.role).removeprefix("MEMBER_ROLE_").lower()
    leader = "a leader it cannot reach" if reply.header.leader_id else "no leader"
    text = f"{leader}: it is a {role} at term {reply.header.raft_term}; "
    text += f"Raft peers it tried: {tried or 'none'}"
    stale = sorted({m.raft_address for m in others} - set(given_peers))
    if stale:
        text += (
            f"; not given to it by this launcher: {', '.join(stale)} (from its Raft log, "
            "i.e. an earlier run on other ports)"
        )
    return text
