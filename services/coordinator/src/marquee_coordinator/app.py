"""gRPC wiring of a coordinator node."""

import grpc

from marquee.coordinator.v1 import (
    cluster_pb2,
    cluster_pb2_grpc,
    election_pb2,
    election_pb2_grpc,
    lease_pb2,
    lease_pb2_grpc,
)
from marquee_platform import ServiceContext
from marquee_platform.placeholders import add_pending

MISSING = "Raft leases, elections and membership arrive with the coordinator issue (#3)"


async def register(server: grpc.aio.Server, ctx: ServiceContext) -> list[str]:
    return [
        add_pending(
            server,
            lease_pb2_grpc.add_LeaseServiceServicer_to_server,
            lease_pb2_grpc.LeaseServiceServicer,
            lease_pb2.DESCRIPTOR.services_by_name["LeaseService"],
            MISSING,
        ),
        add_pending(
            server,
            election_pb2_grpc.add_ElectionServiceServicer_to_server,
            election_pb2_grpc.ElectionServiceServicer,
            election_pb2.DESCRIPTOR.services_by_name["ElectionService"],
            MISSING,
        ),
        add_pending(
            server,
            cluster_pb2_grpc.add_ClusterServiceServicer_to_server,
            cluster_pb2_grpc.ClusterServiceServicer,
            cluster_pb2.DESCRIPTOR.services_by_name["ClusterService"],
            MISSING,
        ),
    ]
