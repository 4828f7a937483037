"""Ask a process how it is through the standard gRPC health API (grpc.health.v1)."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

# Reported when the probe itself fails: no answer, refused connection, timeout...
UNREACHABLE = "UNREACHABLE"
SERVING = "SERVING"


async def check_health(address: str, service: str = "", deadline: float = 2.0) -> str:
    """The serving status of `service` at `address` (host:port), e.g. "SERVING".

    `deadline` is in seconds. The empty service name asks about the process as
    a whole. Never raises for an unhealthy or unreachable server: gives
    UNREACHABLE, or SERVICE_UNKNOWN (NOT_FOUND) for a service it does not know.
    """
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = await stub.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=deadline
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return "SERVICE_UNKNOWN"
            return UNREACHABLE
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
