"""gRPC wiring of the cache gateway."""

import grpc

from marquee.cache.v1 import cache_pb2, cache_pb2_grpc
from marquee_platform import ServiceContext
from marquee_platform.placeholders import add_pending

MISSING = "the two-level cache and rate limiter arrive with the cache issue (#4)"


async def register(server: grpc.aio.Server, ctx: ServiceContext) -> list[str]:
    return [
        add_pending(
            server,
            cache_pb2_grpc.add_CacheServiceServicer_to_server,
            cache_pb2_grpc.CacheServiceServicer,
            cache_pb2.DESCRIPTOR.services_by_name["CacheService"],
            MISSING,
        )
    ]
