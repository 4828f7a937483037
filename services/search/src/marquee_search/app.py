"""gRPC wiring of the search service."""

import grpc

from marquee.search.v1 import search_pb2, search_pb2_grpc
from marquee_platform import ServiceContext
from marquee_platform.placeholders import add_pending

MISSING = "collections, indexing and queries arrive with the search issue"


async def register(server: grpc.aio.Server, ctx: ServiceContext) -> list[str]:
    return [
        add_pending(
            server,
            search_pb2_grpc.add_SearchServiceServicer_to_server,
            search_pb2_grpc.SearchServiceServicer,
            search_pb2.DESCRIPTOR.services_by_name["SearchService"],
            MISSING,
        )
    ]
