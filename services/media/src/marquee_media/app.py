"""gRPC wiring of the media service."""

import grpc

from marquee.media.v1 import media_pb2, media_pb2_grpc
from marquee_platform import ServiceContext
from marquee_platform.placeholders import add_pending

MISSING = "storage, image fetch, thumbnails and HLS transcoding arrive with the media issue"


async def register(server: grpc.aio.Server, ctx: ServiceContext) -> list[str]:
    return [
        add_pending(
            server,
            media_pb2_grpc.add_MediaServiceServicer_to_server,
            media_pb2_grpc.MediaServiceServicer,
            media_pb2.DESCRIPTOR.services_by_name["MediaService"],
            MISSING,
        )
    ]
