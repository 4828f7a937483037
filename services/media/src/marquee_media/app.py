"""gRPC wiring of the media service: store, token verifier, and shutdown order."""

from __future__ import annotations

import grpc

from marquee.media.v1 import media_pb2_grpc
from marquee_authn import GrpcJwksSource, TokenVerifier
from marquee_media.servicer import MediaServicer
from marquee_media.settings import MediaSettings
from marquee_media.storage.factory import open_store
from marquee_platform import ServiceContext

SERVICE_NAME = "marquee.media.v1.MediaService"


async def register(server: grpc.aio.Server, ctx: ServiceContext) -> list[str]:
    settings = ctx.settings
    assert isinstance(settings, MediaSettings)
    auth_channel = grpc.aio.insecure_channel(settings.auth_address)

    async def close_auth_channel() -> None:
        await auth_channel.close()

    ctx.on_shutdown(close_auth_channel)
    verifier = TokenVerifier(GrpcJwksSource(auth_channel), issuer=settings.token_issuer)
    store = await open_store(settings)
    ctx.on_shutdown(store.close)
    media_pb2_grpc.add_MediaServiceServicer_to_server(
        MediaServicer(settings, store, verifier), server
    )
    return [SERVICE_NAME]
