"""S-3 durability with the write-ahead log: acknowledged = logged and fsynced, committed later.

The process tests kill -9 the service right after an acknowledged write, while
the write is still only in the log (checked on disk before the kill), and show
that a restart makes every acknowledged write searchable. The in-process
tests pin down the log itself: a torn last record is dropped, and applying the
log again over a commit that already holds it changes nothing.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest
import tantivy
from search_process import SearchProcess

from marquee.search.v1 import search_pb2 as pb
from marquee_search.backend import Action
from marquee_search.embedded.collection import EmbeddedCollection, wal_path
from marquee_search.embedded.wal import HEADER, WriteAheadLog
from marquee_search.schema import schema_from_request

NAME = "logged"
FIELDS = [
    pb.Field(name="title", type=pb.FIELD_TYPE_STRING),
    pb.Field(name="batch", type=pb.FIELD_TYPE_INT32, facet=True),
]
BATCH = 50


def batch(number: int, size: int = BATCH) -> list[pb.Document]:
    return [
        pb.Document(json=json.dumps({"id": f"{number}-{i}", "title": f"doc {i}", "batch": number}))
        for i in range(size)
    ]


def log_file(data_dir: Path) -> Path:
    return data_dir / "collections" / NAME / "index-1.wal"


async def batch_counts(process: SearchProcess) -> dict[str, int]:
    found = await process.stub.Search(
        pb.SearchRequest(collection=NAME, q="*", facet_by=["batch"], max_facet_values=100)
    )
    return {c.value: c.count for c in found.facet_counts[0].counts}


async def start_with_logged_writes(data_dir: Path, log_path: Path) -> SearchProcess:
    """A service that acknowledged batches 1-4, deleted batch 2 by filter, then 3-0..3-9 by
    id, and indexed batch 5, and was killed while batch 5 and the deletes by id were only
    in the log."""
    first = SearchProcess(data_dir, log_path)
    await first.wait_serving()
    await first.stub.EnsureCollection(pb.EnsureCollectionRequest(name=NAME, fields=FIELDS))
    for number in (1, 2, 3, 4):
        reply = await first.stub.Index(pb.IndexRequest(collection=NAME, documents=batch(number)))
        assert reply.success_count == BATCH
    deleted = await first.stub.Delete(pb.DeleteRequest(collection=NAME, filter_by="batch:=2"))
    assert deleted.deleted_count == BATCH
    ids = [f"3-{i}" for i in range(10)]
    assert (await first.stub.Delete(pb.DeleteRequest(collection=NAME, ids=ids))).deleted_count == 10
    reply = await first.stub.Index(pb.IndexRequest(collection=NAME, documents=batch(5)))
    assert reply.success_count == BATCH
    # No read and no idle second in between: the last writes were not committed.
    assert log_file(data_dir).stat().st_size > 0
    await first.kill()
    return first


async def test_acknowledged_writes_in_the_log_survive_kill_9(tmp_path: Path) -> None:
    data_dir = tmp_path / "search"
    await start_with_logged_writes(data_dir, tmp_path / "first.log")
    second = SearchProcess(data_dir, tmp_path / "second.log")
    try:
        await second.wait_serving()
        assert await batch_counts(second) == {"1": BATCH, "3": BATCH - 10, "4": BATCH, "5": BATCH}
        # The deleted ids stay deleted, the log was emptied into a commit, and the
        # restarted engine goes on where it stopped.
        gone = await second.stub.Search(
            pb.SearchRequest(collection=NAME, q="*", filter_by="batch:=3", per_page=250)
        )
        assert not {f"3-{i}" for i in range(10)} & {
            h.document.fields["id"].string_value for h in gone.hits
        }
        assert log_file(data_dir).stat().st_size == 0
        more = await second.stub.Index(pb.IndexRequest(collection=NAME, documents=batch(6)))
        assert more.success_count == BATCH
        listed = await second.stub.GetCollection(pb.GetCollectionRequest(name=NAME))
        assert listed.collection.num_documents == 5 * BATCH - 10
    finally:
        assert await second.stop() == 0


async def test_a_torn_last_record_is_dropped_and_nothing_acknowledged_is_lost(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "search"
    await start_with_logged_writes(data_dir, tmp_path / "first.log")
    path = log_file(data_dir)
    # What a kill in the middle of the next append leaves: a record cut short.
    payload = json.dumps({"put": [[999, json.dumps({"id": "torn", "title": "x", "batch": 9})]]})
    record = HEADER.pack(len(payload), zlib.crc32(payload.encode())) + payload.encode()
    acknowledged_size = path.stat().st_size
    with path.open("ab") as f:
        f.write(record[: len(record) // 2])
    second = SearchProcess(data_dir, tmp_path / "second.log")
    try:
        await second.wait_serving()
        assert await batch_counts(second) == {"1": BATCH, "3": BATCH - 10, "4": BATCH, "5": BATCH}
        torn = await second.stub.Search(
            pb.SearchRequest(collection=NAME, q="*", filter_by="batch:=9")
        )
        assert torn.found == 0
    finally:
        assert await second.stop() == 0
    assert acknowledged_size > 0


def test_the_log_keeps_whole_records_only(tmp_path: Path) -> None:
    log = WriteAheadLog(tmp_path / "x.wal")
    log.append(b"first")
    log.append(b"second")
    whole = log.size
    log.close()
    with (tmp_path / "x.wal").open("ab") as f:
        f.write(struct.pack("<II", 100, 0) + b"short")  # a header promising more than follows
    reopened = WriteAheadLog(tmp_path / "x.wal")
    assert reopened.records() == [b"first", b"second"]
    assert reopened.size == whole == (tmp_path / "x.wal").stat().st_size
    reopened.append(b"third")  # appends go after the last whole record
    assert reopened.records() == [b"first", b"second", b"third"]
    # A checksum that does not match ends the log as well.
    reopened.close()
    data = bytearray((tmp_path / "x.wal").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "x.wal").write_bytes(bytes(data))
    again = WriteAheadLog(tmp_path / "x.wal")
    assert again.records() == [b"first", b"second"]
    again.close()


def test_applying_the_log_again_over_its_commit_changes_nothing(tmp_path: Path) -> None:
    """A kill between tantivy's commit and the emptying of the log replays committed writes."""
    schema, problems = schema_from_request(pb.EnsureCollectionRequest(name=NAME, fields=FIELDS))
    assert not problems
    index_dir = tmp_path / "index-1"
    collection = EmbeddedCollection(index_dir, schema)
    bodies = [{"id": str(i), "title": f"doc {i}", "batch": i % 3} for i in range(30)]
    assert all(r.ok for r in collection.index(bodies, Action.CREATE))
    assert all(r.ok for r in collection.index(bodies[:5], Action.UPSERT))  # replaced ones
    assert collection.delete_ids(["7", "8", "absent"]) == 2
    collection._commit()  # committed, and the process dies before the log is emptied
    logged = wal_path(index_dir).stat().st_size
    assert logged > 0
    collection.close(flush=False)

    reopened = EmbeddedCollection(index_dir, schema)
    try:
        assert reopened.count() == 28
        assert wal_path(index_dir).stat().st_size == 0
        ids = sorted(int(body["id"]) for _, body in reopened.documents_in_order())
        assert ids == [i for i in range(30) if i not in (7, 8)]
        # CREATE still sees them as there, and new documents get fresh seqs.
        assert not reopened.index([bodies[0]], Action.CREATE)[0].ok
        assert reopened.index([{"id": "new", "title": "t", "batch": 1}], Action.CREATE)[0].ok
        reopened.flush()
        seqs = [seq for seq, _ in reopened.documents_in_order()]
        assert len(seqs) == len(set(seqs)) == 29
    finally:
        reopened.close()


def test_a_write_whose_append_or_apply_fails_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log append runs beside the writer's adds: either failing undoes both."""
    schema, problems = schema_from_request(pb.EnsureCollectionRequest(name=NAME, fields=FIELDS))
    assert not problems
    index_dir = tmp_path / "index-1"
    collection = EmbeddedCollection(index_dir, schema)
    try:
        kept = [{"id": f"kept-{i}", "title": "kept", "batch": 1} for i in range(20)]
        assert all(r.ok for r in collection.index(kept, Action.CREATE))
        logged = wal_path(index_dir).stat().st_size
        lost = [{"id": f"lost-{i}", "title": "lost", "batch": 2} for i in range(20)]

        def full_disk(self: WriteAheadLog, payload: bytes) -> None:
            raise OSError(28, "No space left on device")

        with monkeypatch.context() as patch:
            patch.setattr(WriteAheadLog, "append", full_disk)
            with pytest.raises(OSError, match="No space"):
                collection.index(lost, Action.CREATE)
        assert wal_path(index_dir).stat().st_size == logged

        def broken_add(
            writer: tantivy.IndexWriter, writes: list[tuple[str, int, str, str, bool]]
        ) -> None:
            writer.add_json(writes[0][3])  # one lands in the writer, then it fails
            raise RuntimeError("engine on fire")

        with monkeypatch.context() as patch:
            patch.setattr(EmbeddedCollection, "_add", staticmethod(broken_add))
            with pytest.raises(RuntimeError, match="on fire"):
                collection.index(lost, Action.CREATE)
        assert wal_path(index_dir).stat().st_size == logged  # its record was cut off again

        collection.flush()
        assert collection.count() == len(kept)
        stored = sorted(str(body["id"]) for _, body in collection.documents_in_order())
        assert stored == sorted(f"kept-{i}" for i in range(20))
        # The ids that failed were never written, so CREATE takes them now.
        assert all(r.ok for r in collection.index(lost, Action.CREATE))
        collection.flush()
        assert collection.count() == len(kept) + len(lost)
    finally:
        collection.close()
