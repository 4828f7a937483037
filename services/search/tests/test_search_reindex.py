"""Reindex as a queued job on a real PostgreSQL (embedded engine): one job per collection,
progress in GetCollection, queries answered throughout, failures reported."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from pydantic import PostgresDsn, SecretStr
from search_support import BOOKS, expect_code, make_books

from marquee.search.v1 import search_pb2 as pb
from marquee.search.v1 import search_pb2_grpc
from marquee_search.app import register
from marquee_search.embedded.collection import EmbeddedCollection
from marquee_search.settings import SearchSettings
from marquee_testing.inprocess import serving
from marquee_testing.typesense import TypesenseEndpoint

if TYPE_CHECKING:
    from marquee.search.v1.search_pb2_grpc import SearchServiceAsyncStub as Stub

# Generous: the machine is shared; every wait below ends as soon as its condition holds.
WAIT_SECONDS = 60.0


class Gate:
    """Holds a rebuild in its worker thread before its second document, until opened."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.opened = threading.Event()


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    gate = Gate()
    original = EmbeddedCollection.add_raw

    calls = iter(range(1_000_000))

    def add_raw(self: EmbeddedCollection, seq: int, body: dict[str, Any]) -> None:
        if next(calls) == 1:  # the first document is counted as done by now
            gate.reached.set()
            if not gate.opened.wait(WAIT_SECONDS):
                raise RuntimeError("the test never opened the gate")
        original(self, seq, body)

    monkeypatch.setattr(EmbeddedCollection, "add_raw", add_raw)
    yield gate
    gate.opened.set()  # a failed test must not leave the worker thread waiting


def _settings(tmp_path: Path, database_url: str | None, **extra: Any) -> SearchSettings:
    return SearchSettings(
        grpc_port=0,
        metrics_port=-1,
        data_dir=tmp_path / "search",
        database_url=None if database_url is None else PostgresDsn(database_url),
        **extra,
    )


@contextlib.asynccontextmanager
async def _stub_for(settings: SearchSettings) -> AsyncIterator[Stub]:
    async with serving("search", settings, register) as running:
        yield search_pb2_grpc.SearchServiceStub(running.channel)


@pytest.fixture
async def stub(tmp_path: Path, scratch_database_url: str) -> AsyncIterator[Stub]:
    async with _stub_for(_settings(tmp_path, scratch_database_url)) as stub:
        yield stub


async def _wait_for(
    stub: Stub, name: str, holds: Callable[[pb.ReindexProgress], bool]
) -> pb.ReindexProgress:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        reply = await stub.GetCollection(pb.GetCollectionRequest(name=name))
        progress = reply.collection.reindex
        if reply.collection.HasField("reindex") and holds(progress):
            return progress
        if time.monotonic() > deadline:
            pytest.fail(f"reindex progress never got there; last: {progress}")
        await asyncio.sleep(0.05)


async def _in_thread(check: Callable[[], bool]) -> bool:
    return await asyncio.to_thread(check)


async def _all_books_found(stub: Stub, name: str) -> None:
    reply = await stub.Search(pb.SearchRequest(collection=name, q="*", per_page=50))
    assert reply.found == len(BOOKS)
    reply = await stub.Search(pb.SearchRequest(collection=name, q="hobbit", query_by=["title"]))
    assert [h.document.fields["id"].string_value for h in reply.hits] == ["2"]


async def test_two_requests_one_job_progress_and_queries_throughout(stub: Stub, gate: Gate) -> None:
    await make_books(stub, "books")
    first, second = await asyncio.gather(
        stub.Reindex(pb.ReindexRequest(collection="books")),
        stub.Reindex(pb.ReindexRequest(collection="books")),
    )
    assert first.job_id == second.job_id > 0
    assert sorted([first.already_queued, second.already_queued]) == [False, True]

    assert await _in_thread(lambda: gate.reached.wait(WAIT_SECONDS))
    running = await _wait_for(
        stub, "books", lambda p: p.state == pb.REINDEX_STATE_RUNNING and p.documents_done >= 1
    )
    assert running.job_id == first.job_id
    assert running.documents_total == len(BOOKS)
    assert running.documents_done < running.documents_total
    assert running.HasField("started_at")
    assert not running.HasField("finished_at")
    # Still one job while it runs; and the old index answers meanwhile.
    again = await stub.Reindex(pb.ReindexRequest(collection="books"))
    assert (again.job_id, again.already_queued) == (first.job_id, True)
    await _all_books_found(stub, "books")

    gate.opened.set()
    done = await _wait_for(stub, "books", lambda p: p.state == pb.REINDEX_STATE_SUCCEEDED)
    assert done.job_id == first.job_id
    assert done.documents_done == done.documents_total == len(BOOKS)
    assert done.HasField("finished_at")
    assert not done.error
    assert done.finished_at.ToDatetime() >= done.started_at.ToDatetime()
    await _all_books_found(stub, "books")
    # Writes go to the new index.
    reply = await stub.Index(
        pb.IndexRequest(
            collection="books",
            documents=[pb.Document(json='{"id": "9", "title": "Emma", "author": "Jane Austen",'
                                   ' "year": 1815, "rating": 4.0, "in_stock": true}')],
        )
    )  # fmt: skip
    assert reply.success_count == 1

    # The job ended: the next request is a new job.
    later = await stub.Reindex(pb.ReindexRequest(collection="books"))
    assert not later.already_queued
    assert later.job_id != first.job_id
    final = await _wait_for(
        stub,
        "books",
        lambda p: p.job_id == later.job_id and p.state == pb.REINDEX_STATE_SUCCEEDED,
    )
    assert final.documents_done == len(BOOKS) + 1


async def test_a_failure_is_reported_and_the_old_index_stays(
    tmp_path: Path, scratch_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: EmbeddedCollection, seq: int, body: dict[str, Any]) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(EmbeddedCollection, "add_raw", broken)
    settings = _settings(tmp_path, scratch_database_url, reindex_max_attempts=1)
    async with _stub_for(settings) as stub:
        await make_books(stub, "books")
        reply = await stub.Reindex(pb.ReindexRequest(collection="books"))
        failed = await _wait_for(stub, "books", lambda p: p.state == pb.REINDEX_STATE_FAILED)
        assert failed.job_id == reply.job_id
        assert "disk on fire" in failed.error
        assert failed.HasField("finished_at")
        await _all_books_found(stub, "books")
        # A failed job does not hold the key: asking again queues a new one.
        retry = await stub.Reindex(pb.ReindexRequest(collection="books"))
        assert not retry.already_queued
        assert retry.job_id != reply.job_id


async def test_typesense_reindex_reimports_every_document(
    tmp_path: Path, scratch_database_url: str, request: pytest.FixtureRequest, collection: str
) -> None:
    typesense: TypesenseEndpoint = request.getfixturevalue("typesense_server")
    settings = SearchSettings(
        grpc_port=0,
        metrics_port=-1,
        backend="typesense",
        typesense_url=typesense.url,
        typesense_api_key=SecretStr(typesense.api_key),
        database_url=PostgresDsn(scratch_database_url),
    )
    async with _stub_for(settings) as stub:
        await make_books(stub, collection)
        reply = await stub.Reindex(pb.ReindexRequest(collection=collection))
        done = await _wait_for(stub, collection, lambda p: p.state == pb.REINDEX_STATE_SUCCEEDED)
        assert done.job_id == reply.job_id
        assert done.documents_done == done.documents_total == len(BOOKS)
        await _all_books_found(stub, collection)
        await stub.DeleteCollection(pb.DeleteCollectionRequest(name=collection))


async def test_dropping_the_collection_forgets_its_reindex(stub: Stub) -> None:
    await make_books(stub, "books")
    await stub.Reindex(pb.ReindexRequest(collection="books"))
    await _wait_for(stub, "books", lambda p: p.state == pb.REINDEX_STATE_SUCCEEDED)
    await stub.DeleteCollection(pb.DeleteCollectionRequest(name="books"))
    await make_books(stub, "books")
    reply = await stub.GetCollection(pb.GetCollectionRequest(name="books"))
    assert not reply.collection.HasField("reindex")


async def test_bad_reindex_requests(stub: Stub) -> None:
    await expect_code(
        grpc.StatusCode.INVALID_ARGUMENT, stub.Reindex(pb.ReindexRequest(collection="no way"))
    )
    await expect_code(grpc.StatusCode.INVALID_ARGUMENT, stub.Reindex(pb.ReindexRequest()))
    await expect_code(
        grpc.StatusCode.NOT_FOUND, stub.Reindex(pb.ReindexRequest(collection="absent"))
    )


async def test_without_a_database_reindex_names_the_setting(tmp_path: Path) -> None:
    async with _stub_for(_settings(tmp_path, None)) as stub:
        await make_books(stub, "books")
        error = await expect_code(
            grpc.StatusCode.FAILED_PRECONDITION,
            stub.Reindex(pb.ReindexRequest(collection="books")),
        )
        assert "MARQUEE_SEARCH_DATABASE_URL" in (error.details() or "")
        reply = await stub.GetCollection(pb.GetCollectionRequest(name="books"))
        assert not reply.collection.HasField("reindex")


def test_cleanup_needs_a_coordinator() -> None:
    with pytest.raises(ValueError, match="coordinator_endpoints"):
        SearchSettings(database_url=PostgresDsn("postgresql://x@127.0.0.1/x"), jobs_cleanup=True)
    settings = SearchSettings(coordinator_endpoints="127.0.0.1:1, 127.0.0.1:2")  # type: ignore[arg-type]
    assert settings.coordinator_endpoints == ["127.0.0.1:1", "127.0.0.1:2"]
