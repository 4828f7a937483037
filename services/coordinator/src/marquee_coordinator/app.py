"""gRPC wiring of a coordinator node: the Raft node, its three services, health and shutdown."""

from __future__ import annotations

import asyncio
import time

import grpc

from marquee.coordinator.v1 import (
    cluster_pb2,
    cluster_pb2_grpc,
    election_pb2,
    election_pb2_grpc,
    lease_pb2,
    lease_pb2_grpc,
)
from marquee_coordinator import early_start
from marquee_coordinator.admin_auth import AdminGuard
from marquee_coordinator.errors import CoordinatorError
from marquee_coordinator.lifecycle import Stopping
from marquee_coordinator.raft_config import FAST_TIMING, NodeConfig, RaftTiming
from marquee_coordinator.raft_node import LeaseNode
from marquee_coordinator.servicer_cluster import ClusterServicer
from marquee_coordinator.servicer_election import ElectionServicer
from marquee_coordinator.servicer_lease import LeaseServicer
from marquee_coordinator.settings import CoordinatorSettings
from marquee_coordinator.waiting import WaitQueues
from marquee_platform import ServiceContext

SERVICES = (
    lease_pb2.DESCRIPTOR.services_by_name["LeaseService"].full_name,
    election_pb2.DESCRIPTOR.services_by_name["ElectionService"].full_name,
    cluster_pb2.DESCRIPTOR.services_by_name["ClusterService"].full_name,
)
# Health names that tell whether this node can do its job: its services and the
# server as a whole ("", what `marquee up` and load balancers probe).
HEALTH_NAMES = (*SERVICES, "")
HEALTH_PERIOD = 0.1
# A planned stop hands leadership over within this, or gives up and lets an election happen.
HANDOVER_LIMIT = 2.0


async def register(server: grpc.aio.Server, ctx: ServiceContext) -> list[str]:
    settings = ctx.settings
    assert isinstance(settings, CoordinatorSettings)
    if settings.client_address is None:
        ctx.log.warning(
            "no fixed gRPC port or advertise_address: followers cannot name the leader's address"
        )
    timing = FAST_TIMING if settings.raft_timing == "fast" else RaftTiming()
    config = NodeConfig.from_settings(
        settings, client_address=settings.client_address, timing=timing
    )
    # `python -m marquee_coordinator` may have started it before importing us.
    node = early_start.adopt(config, ctx.name) if early_start.started() else None
    if node is None:
        # Here, on the main thread: pysyncobj stops its tick thread when its creator exits.
        node = LeaseNode(config)
    stopping = Stopping()
    queues = WaitQueues()
    lease_pb2_grpc.add_LeaseServiceServicer_to_server(LeaseServicer(node, stopping, queues), server)
    election_pb2_grpc.add_ElectionServiceServicer_to_server(
        ElectionServicer(node, stopping, queues), server
    )
    admin = AdminGuard(settings.admin_credential)
    cluster_pb2_grpc.add_ClusterServiceServicer_to_server(ClusterServicer(node, admin), server)

    for name in HEALTH_NAMES:
        ctx.set_serving(name, False)
    ctx.spawn(_report_health(node, ctx), name="coordinator-health")

    async def hand_over() -> None:
        await _hand_over(node, ctx)
        stopping.set()  # after the handover, so streams reconnect to the new leader

    async def close() -> None:
        await asyncio.to_thread(node.close)

    ctx.on_stop(hand_over)
    ctx.on_shutdown(close)
    return list(SERVICES)


async def _report_health(node: LeaseNode, ctx: ServiceContext) -> None:
    """NOT_SERVING while this node has no leader (or, leading, no committed epoch)."""
    reported: bool | None = False
    while True:
        serving = node.has_leader()
        if serving != reported:
            for name in HEALTH_NAMES:
                ctx.set_serving(name, serving)
            ctx.log.info("coordinator health", serving=serving, leader=node.view().leader_id)
            reported = serving
        await asyncio.sleep(HEALTH_PERIOD)


async def _hand_over(node: LeaseNode, ctx: ServiceContext) -> None:
    """On a planned stop of the leader, transfer leadership first: milliseconds, not an election."""
    if not node.is_serving() or not node.members()[1:]:
        return
    started = time.monotonic()
    try:
        new_leader = await node.transfer_leadership(within=HANDOVER_LIMIT)
    except CoordinatorError as exc:
        ctx.log.warning("leadership handover failed; the others will elect", error=str(exc))
        return
    ctx.log.info(
        "leadership handed over",
        to=new_leader,
        millis=round((time.monotonic() - started) * 1000, 1),
    )
