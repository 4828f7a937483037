"""The embedded engine's own paths that a small catalogue does not reach."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from pathlib import Path

import tantivy

from marquee.search.v1 import search_pb2 as pb
from marquee_search import documents, validation
from marquee_search.backend import Action
from marquee_search.embedded import layout
from marquee_search.embedded.backend import EmbeddedBackend
from marquee_search.embedded.collection import ONE_PASS_HITS, EmbeddedCollection, wal_path
from marquee_search.embedded.layout import register_tokenizer
from marquee_search.embedded.wal import WriteAheadLog
from marquee_search.expressions import float32
from marquee_search.schema import schema_from_request
from marquee_search.tokens import normalized_value

FIELDS = [
    pb.Field(name="title", type=pb.FIELD_TYPE_STRING),
    pb.Field(name="rank", type=pb.FIELD_TYPE_INT32),
]


def test_more_hits_than_one_pass_are_all_ranked(tmp_path: Path) -> None:
    schema, problems = schema_from_request(pb.EnsureCollectionRequest(name="c", fields=FIELDS))
    assert not problems
    collection = EmbeddedCollection(tmp_path / "index", schema)
    try:
        total = ONE_PASS_HITS + 100
        # Ranks run backwards, so the best ranks are the last documents indexed.
        docs = [{"id": str(i), "title": "same words", "rank": total - i} for i in range(total)]
        assert all(r.ok for r in collection.index(docs, Action.CREATE))
        collection.flush()  # the backend commits logged writes before a read; here, by hand
        request = pb.SearchRequest(
            collection="c", q="same", query_by=["title"], sort_by=["rank:asc"], per_page=5
        )
        first = collection.search(validation.check_search(request, schema))
        assert first.found == total
        assert [hit.document["rank"] for hit in first.hits] == [1, 2, 3, 4, 5]
        request.page = -(-total // 5)  # the last page, partly filled
        last = collection.search(validation.check_search(request, schema))
        expected = list(range(5 * (request.page - 1) + 1, total + 1))
        assert [hit.document["rank"] for hit in last.hits] == expected
    finally:
        collection.close()


def _layout_1_index(index_dir: Path, bodies: list[dict[str, object]]) -> None:
    """An index as layout version 1 wrote it (a raw `k_` field per string field).

    Only `_seq` and `_source` are read back from it; the rest is there so the
    index on disk has the old schema, which the current one cannot open.
    """
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("_id", tokenizer_name="raw", index_option="basic")
    builder.add_unsigned_field("_seq", indexed=True, fast=True)
    builder.add_bytes_field("_source", stored=True)
    builder.add_text_field("t_title", tokenizer_name="marquee_tokens", index_option="position")
    builder.add_text_field("k_title", tokenizer_name="raw", index_option="basic")
    builder.add_integer_field("n_rank", indexed=True, fast=True)
    tschema = builder.build()
    index_dir.mkdir(parents=True)
    index = tantivy.Index(tschema, path=str(index_dir))
    register_tokenizer(index)
    writer = index.writer(15_000_000, 1)
    for seq, body in enumerate(bodies, start=1):
        title = normalized_value(str(body["title"]))
        fields = {"_id": body["id"], "_seq": seq, "_source": json.dumps(body).encode()}
        writer.add_document(
            tantivy.Document.from_dict(
                {**fields, "t_title": title, "k_title": title, "n_rank": body["rank"]}, tschema
            )
        )
    writer.commit()
    writer.wait_merging_threads()


async def test_an_index_of_an_earlier_layout_is_rebuilt_when_opened(tmp_path: Path) -> None:
    schema, problems = schema_from_request(pb.EnsureCollectionRequest(name="old", fields=FIELDS))
    assert not problems
    directory = tmp_path / "collections" / "old"
    bodies: list[dict[str, object]] = [
        {"id": str(i), "title": f"Old Title {i % 3}", "rank": i} for i in range(10)
    ]
    _layout_1_index(directory / "index-1", bodies)
    # Acknowledged writes the old generation had only in its log: one new, one delete.
    log = WriteAheadLog(wal_path(directory / "index-1"))
    log.append(
        json.dumps({"put": [[11, {"id": "new", "title": "Old Title 1", "rank": 99}]]}).encode()
    )
    log.append(json.dumps({"delete": ["4"]}).encode())
    log.close()
    # What collection.json held before it recorded a layout version.
    (directory / "collection.json").write_text(
        json.dumps({"schema": schema.to_json(), "generation": 1})
    )

    backend = await EmbeddedBackend.open(tmp_path)
    try:
        meta = json.loads((directory / "collection.json").read_text())
        assert (meta["generation"], meta["layout"]) == (2, layout.VERSION)
        assert sorted(p.name for p in directory.iterdir()) == [
            "collection.json",
            "index-2",
            "index-2.wal",
        ]
        request = pb.SearchRequest(
            collection="old", q="*", filter_by="title:=old title 1", sort_by=["rank:asc"]
        )
        found = await backend.search("old", validation.check_search(request, schema))
        assert [hit.document["id"] for hit in found.hits] == ["1", "7", "new"]
        assert (await backend.get_collection("old")).num_documents == 10
        # Seqs go on after the highest one copied (Typesense's tie-break: newest first).
        indexed = await backend.index(
            "old", [{"id": "newer", "title": "Old Title 1", "rank": 99}], Action.CREATE
        )
        assert indexed[0].ok
        request = pb.SearchRequest(collection="old", q="*", filter_by="rank:=99")
        found = await backend.search("old", validation.check_search(request, schema))
        assert [hit.document["id"] for hit in found.hits] == ["newer", "new"]
    finally:
        await backend.close()

    again = await EmbeddedBackend.open(tmp_path)  # rebuilt once, not at every open
    try:
        assert json.loads((directory / "collection.json").read_text())["generation"] == 2
        assert (await again.get_collection("old")).num_documents == 11
    finally:
        await again.close()


def test_float_keys_order_as_float32_values_compare() -> None:
    values = [-math.inf, -3.5e38, -1.5, -1e-45, -0.0, 0.0, 1e-45, 0.1, 3.9, 4.0, 3.4e38, math.inf]
    values += [1e39, -1e39]  # beyond float32: stored as infinity, as Typesense does
    narrowed = [float32(v) for v in values]
    keys = [layout.float_key(v) for v in values]
    for a, ka in zip(narrowed, keys, strict=True):
        for b, kb in zip(narrowed, keys, strict=True):
            assert (a < b) == (ka < kb), (a, b)
            assert (a == b) == (ka == kb), (a, b)
    assert layout.float_key(-0.0) == layout.float_key(0.0) == 0
    assert layout.float_key(3.9) == layout.float_key(float32(3.9)) != layout.float_key(4.0)


ALL_KINDS = [
    pb.Field(name="s", type=pb.FIELD_TYPE_STRING, facet=True),
    pb.Field(name="s_plain", type=pb.FIELD_TYPE_STRING, optional=True),
    pb.Field(name="ss", type=pb.FIELD_TYPE_STRING_ARRAY, facet=True, optional=True),
    pb.Field(name="i32", type=pb.FIELD_TYPE_INT32),
    pb.Field(name="i64", type=pb.FIELD_TYPE_INT64, optional=True),
    pb.Field(name="i32s", type=pb.FIELD_TYPE_INT32_ARRAY, optional=True),
    pb.Field(name="f", type=pb.FIELD_TYPE_FLOAT, optional=True),
    pb.Field(name="fs", type=pb.FIELD_TYPE_FLOAT_ARRAY, optional=True),
    pb.Field(name="b", type=pb.FIELD_TYPE_BOOL, facet=True, optional=True),
    pb.Field(name="bs", type=pb.FIELD_TYPE_BOOL_ARRAY, optional=True),
    pb.Field(name="kept", type=pb.FIELD_TYPE_STRING, index=False, optional=True),
]
# Per field, values that fit it; any of them may also be tried on another field.
FITTING: dict[str, list[object]] = {
    "s": ["Café  au\tlait!", "", "J.K. Rowling", "\u00e6on \u2603", "a\x0bb"],
    "s_plain": ["x", "Anti-virus Handbook"],
    "ss": [[], ["a", "B c"], ["Straße", "x"]],
    "i32": [0, -5, 2**31 - 1],
    "i64": [2**40, -(2**63)],
    "i32s": [[], [1, 2]],
    "f": [1.5, -0.0, 1e39, 3, 3.9],
    "fs": [[], [1.5, 2]],
    "b": [True, False],
    "bs": [[True, False]],
    "kept": ["stored only"],
}
UNFITTING: list[object] = [
    None, 2**31, 2**63, float("inf"), "1999", 1999.0, True, ["a", None], [1, "a"], {"k": 1}, "x",
]  # fmt: skip


def _outcome(
    write: Callable[..., str], body: dict[str, object], seq: int, source: str
) -> tuple[str, str]:
    try:
        return "document", write(body, seq, source, check=True)
    except documents.DocumentError as exc:
        return "error", str(exc)


def test_the_generated_document_writer_matches_the_loop() -> None:
    """Every Index call takes the generated writer: same JSON, same first error, as the loop."""
    schema, problems = schema_from_request(pb.EnsureCollectionRequest(name="k", fields=ALL_KINDS))
    assert not problems
    writer = layout.DocumentWriter(schema)
    rng = random.Random(7)
    outcomes = set()
    for seq in range(3000):
        body: dict[str, object] = {"id": f"doc-{seq}"}
        for field in ALL_KINDS:
            draw = rng.random()
            if draw < 0.9:
                body[field.name] = rng.choice(FITTING[field.name])
            elif draw < 0.97:
                body[field.name] = rng.choice(UNFITTING)
        source = json.dumps(body, default=str)
        expected = _outcome(writer._loop, body, seq, source)
        assert _outcome(writer.document, body, seq, source) == expected
        if expected[0] == "document":
            json.loads(expected[1])  # and it is JSON
        outcomes.add(expected[0])
    assert outcomes == {"error", "document"}
