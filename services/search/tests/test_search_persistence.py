"""S-3 durability: what Index acknowledged survives a kill -9 of the embedded engine.

"Acknowledged" means the Index (or Delete) call returned: its record is in the
collection's write-ahead log, fsynced, before it answers (tantivy commits
later; `test_search_wal.py` kills the process while writes are only in the
log). So every acknowledged document is there after a restart, and a batch cut
short by the kill is there whole or not at all, never in part.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
from search_process import SearchProcess

from marquee.search.v1 import search_pb2 as pb

BATCH = 20
FIELDS = [
    pb.Field(name="title", type=pb.FIELD_TYPE_STRING),
    pb.Field(name="batch", type=pb.FIELD_TYPE_INT32, facet=True),
]


def batch(number: int) -> list[pb.Document]:
    return [
        pb.Document(json=json.dumps({"id": f"{number}-{i}", "title": f"doc {i}", "batch": number}))
        for i in range(BATCH)
    ]


async def test_acknowledged_documents_survive_kill_9(tmp_path: Path) -> None:
    data_dir = tmp_path / "search"
    first = SearchProcess(data_dir, tmp_path / "first.log")
    await first.wait_serving()
    await first.stub.EnsureCollection(pb.EnsureCollectionRequest(name="crash", fields=FIELDS))
    acknowledged = []
    for number in range(5):
        reply = await first.stub.Index(pb.IndexRequest(collection="crash", documents=batch(number)))
        assert reply.success_count == BATCH
        acknowledged.append(number)
    await first.stub.Delete(pb.DeleteRequest(collection="crash", filter_by="batch:=0"))
    # One more batch in flight while the process dies: it may land whole or not at all.
    in_flight = asyncio.ensure_future(
        first.stub.Index(pb.IndexRequest(collection="crash", documents=batch(99)))
    )
    await asyncio.sleep(0)
    await first.kill()
    # Its answer does not matter and may be any: an answer, UNAVAILABLE, or a local
    # cancellation when kill() closes the channel under it. The restart decides.
    await asyncio.wait({in_flight}, timeout=10)
    assert in_flight.done()
    if not in_flight.cancelled() and (error := in_flight.exception()) is not None:
        assert isinstance(error, grpc.aio.AioRpcError), error

    second = SearchProcess(data_dir, tmp_path / "second.log")
    try:
        await second.wait_serving()
        found = await second.stub.Search(
            pb.SearchRequest(collection="crash", q="*", facet_by=["batch"], max_facet_values=100)
        )
        counts = {c.value: c.count for c in found.facet_counts[0].counts}
        assert all(counts[str(n)] == BATCH for n in acknowledged[1:]), counts
        assert "0" not in counts, "the acknowledged delete survives too"
        assert counts.get("99", BATCH) == BATCH, "a batch lands whole or not at all"
        # The restarted engine keeps writing where it stopped.
        more = await second.stub.Index(pb.IndexRequest(collection="crash", documents=batch(7)))
        assert more.success_count == BATCH
        listed = await second.stub.GetCollection(pb.GetCollectionRequest(name="crash"))
        assert listed.collection.num_documents == sum(counts.values()) + BATCH
    finally:
        await second.stop()


async def test_schema_change_survives_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "search"
    first = SearchProcess(data_dir, tmp_path / "first.log")
    await first.wait_serving()
    await first.stub.EnsureCollection(pb.EnsureCollectionRequest(name="grow", fields=FIELDS))
    await first.stub.Index(pb.IndexRequest(collection="grow", documents=batch(1)))
    extra = pb.Field(name="pages", type=pb.FIELD_TYPE_INT32, optional=True)
    await first.stub.EnsureCollection(
        pb.EnsureCollectionRequest(name="grow", fields=[*FIELDS, extra])
    )
    await first.kill()
    second = SearchProcess(data_dir, tmp_path / "second.log")
    try:
        await second.wait_serving()
        got = await second.stub.GetCollection(pb.GetCollectionRequest(name="grow"))
        assert [f.name for f in got.collection.fields] == ["title", "batch", "pages"]
        assert got.collection.num_documents == BATCH
        assert (
            await second.stub.Search(
                pb.SearchRequest(collection="grow", q="doc", query_by=["title"])
            )
        ).found == BATCH
    finally:
        assert await second.stop() == 0
