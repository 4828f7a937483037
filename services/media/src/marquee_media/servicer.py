"""MediaService: every RPC needs a caller identity (an access token from auth)."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import grpc

from marquee.media.v1 import media_pb2, media_pb2_grpc
from marquee_authn import TokenVerifier, authenticated, current_identity
from marquee_media import image_rpcs, objects
from marquee_media.fetch import ImageFetcher
from marquee_media.settings import MediaSettings
from marquee_media.storage import ObjectStore
from marquee_media.thumbnails import ThumbnailRenderer
from marquee_media.transcode.rpcs import Transcoder, describe

Context = grpc.aio.ServicerContext[Any, Any]


class MediaServicer(media_pb2_grpc.MediaServiceServicer):
    def __init__(
        self,
        settings: MediaSettings,
        store: ObjectStore,
        token_verifier: TokenVerifier,
        fetcher: ImageFetcher,
        renderer: ThumbnailRenderer,
        transcoder: Transcoder,
    ) -> None:
        self.settings = settings
        self.store = store
        self.token_verifier = token_verifier
        self.fetcher = fetcher
        self.renderer = renderer
        self.transcoder = transcoder

    @authenticated
    async def Upload(
        self, request_iterator: AsyncIterable[media_pb2.UploadRequest], context: Context
    ) -> media_pb2.UploadResponse:
        return await objects.upload(self.store, request_iterator, self.settings.max_object_bytes)

    @authenticated
    async def Download(
        self, request: media_pb2.DownloadRequest, context: Context
    ) -> AsyncIterator[media_pb2.DownloadResponse]:
        async for message in objects.download(self.store, request):
            yield message

    @authenticated
    async def Stat(
        self, request: media_pb2.StatRequest, context: Context
    ) -> media_pb2.StatResponse:
        return await objects.stat(self.store, request)

    @authenticated
    async def Delete(
        self, request: media_pb2.DeleteRequest, context: Context
    ) -> media_pb2.DeleteResponse:
        return await objects.delete(self.store, request)

    @authenticated
    async def FetchImage(
        self, request: media_pb2.FetchImageRequest, context: Context
    ) -> media_pb2.FetchImageResponse:
        return await image_rpcs.fetch_image(self.store, self.fetcher, request)

    @authenticated
    async def Thumbnail(
        self, request: media_pb2.ThumbnailRequest, context: Context
    ) -> media_pb2.ThumbnailResponse:
        s = self.settings
        return await image_rpcs.thumbnail(
            self.store, self.renderer, request, s.thumbnail_sizes, s.thumbnail_max_source_bytes
        )

    @authenticated
    async def StartTranscode(
        self, request: media_pb2.StartTranscodeRequest, context: Context
    ) -> media_pb2.StartTranscodeResponse:
        return await self.transcoder.start(request, current_identity().subject)

    @authenticated
    async def GetTranscode(
        self, request: media_pb2.GetTranscodeRequest, context: Context
    ) -> media_pb2.GetTranscodeResponse:
        session = self.transcoder.session(request.session_id, current_identity().subject)
        return media_pb2.GetTranscodeResponse(session=describe(session))

    @authenticated
    async def GetPlaylist(
        self, request: media_pb2.GetPlaylistRequest, context: Context
    ) -> media_pb2.GetPlaylistResponse:
        return await self.transcoder.playlist(request, current_identity().subject)

    @authenticated
    async def GetSegment(
        self, request: media_pb2.GetSegmentRequest, context: Context
    ) -> AsyncIterator[media_pb2.GetSegmentResponse]:
        async for message in self.transcoder.segment(request, current_identity().subject):
            yield message

    @authenticated
    async def StopTranscode(
        self, request: media_pb2.StopTranscodeRequest, context: Context
    ) -> media_pb2.StopTranscodeResponse:
        stopped = await self.transcoder.stop(request, current_identity().subject)
        return media_pb2.StopTranscodeResponse(stopped=stopped)
