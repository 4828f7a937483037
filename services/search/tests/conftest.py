from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from pydantic import SecretStr

from marquee.search.v1 import search_pb2_grpc
from marquee_search.app import register
from marquee_search.settings import SearchSettings
from marquee_testing.inprocess import RunningService, serving
from marquee_testing.typesense import TypesenseEndpoint

if TYPE_CHECKING:  # the async stub class exists only in the type stubs
    from marquee.search.v1.search_pb2_grpc import SearchServiceAsyncStub

_names = itertools.count()


@pytest.fixture
def collection() -> str:
    """A collection name of its own per test: the session Typesense is shared."""
    return f"c{next(_names)}_{uuid.uuid4().hex[:8]}"


@pytest.fixture(params=["embedded", "typesense"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> SearchSettings:
    if request.param == "embedded":
        return SearchSettings(grpc_port=0, metrics_port=-1, data_dir=tmp_path / "search")
    typesense: TypesenseEndpoint = request.getfixturevalue("typesense_server")
    return SearchSettings(
        grpc_port=0,
        metrics_port=-1,
        backend="typesense",
        typesense_url=typesense.url,
        typesense_api_key=SecretStr(typesense.api_key),
    )


@pytest.fixture
async def service(settings: SearchSettings) -> AsyncIterator[RunningService]:
    async with serving("search", settings, register) as running:
        yield running


@pytest.fixture
def stub(service: RunningService) -> SearchServiceAsyncStub:
    return search_pb2_grpc.SearchServiceStub(service.channel)
