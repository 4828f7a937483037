"""A tiny real grpc.aio server with the standard health service, for the CLI's unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc


@asynccontextmanager
async def health_server() -> AsyncIterator[str]:
    """Its address; overall "" and "demo.v1.Up" SERVING, "demo.v1.Down" NOT_SERVING."""
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await servicer.set("demo.v1.Up", health_pb2.HealthCheckResponse.SERVING)
    await servicer.set("demo.v1.Down", health_pb2.HealthCheckResponse.NOT_SERVING)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)
