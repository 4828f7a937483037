"""gRPC wiring of the search service: the backend the settings choose, and its shutdown."""

from __future__ import annotations

import grpc

from marquee.search.v1 import search_pb2_grpc
from marquee_platform import ServiceContext
from marquee_search.backend import SearchBackend
from marquee_search.embedded import EmbeddedBackend
from marquee_search.servicer import SearchServicer
from marquee_search.settings import SearchSettings
from marquee_search.typesense_backend import TypesenseBackend
from marquee_search.typesense_backend.connection import Limits

SERVICE_NAME = "marquee.search.v1.SearchService"


async def make_backend(settings: SearchSettings) -> SearchBackend:
    if settings.backend == "typesense":
        limits = Limits(
            connect_timeout=settings.typesense_connect_timeout,
            read_timeout=settings.typesense_read_timeout,
            retries=settings.typesense_retries,
            retry_backoff=settings.typesense_retry_backoff,
            breaker_threshold=settings.typesense_breaker_threshold,
            breaker_reset_timeout=settings.typesense_breaker_reset_timeout,
        )
        return TypesenseBackend(
            settings.typesense_url,
            settings.typesense_api_key.get_secret_value(),
            limits,
            settings.typesense_max_candidates,
        )
    return await EmbeddedBackend.open(settings.data_dir)


async def register(server: grpc.aio.Server, ctx: ServiceContext) -> list[str]:
    settings = ctx.settings
    assert isinstance(settings, SearchSettings)
    backend = await make_backend(settings)
    ctx.on_shutdown(backend.close)  # after the drain: in-flight writes finish their commit
    search_pb2_grpc.add_SearchServiceServicer_to_server(
        SearchServicer(backend, settings.max_documents), server
    )
    return [SERVICE_NAME]
