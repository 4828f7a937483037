"""A tiny real grpc.aio server with the standard health service, for the CLI's unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

UP = "demo.v1.Up"
DOWN = "demo.v1.Down"


@asynccontextmanager
async def health_server(*, down: bool = True, with_reflection: bool = True) -> AsyncIterator[str]:
    """Its address; overall "" and UP SERVING, DOWN NOT_SERVING.

    Reflection lists UP, and DOWN unless `down` is false, as the services it serves
    (as every Marquee service does, with health and reflection themselves).
    """
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    served = [UP, DOWN] if down else [UP]
    if with_reflection:
        reflection.enable_server_reflection(
            [*served, health.SERVICE_NAME, reflection.SERVICE_NAME], server
        )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await servicer.set(UP, health_pb2.HealthCheckResponse.SERVING)
    await servicer.set(DOWN, health_pb2.HealthCheckResponse.NOT_SERVING)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)
