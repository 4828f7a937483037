"""The embedded engine's own paths that a small catalogue does not reach."""

from __future__ import annotations

from pathlib import Path

from marquee.search.v1 import search_pb2 as pb
from marquee_search import validation
from marquee_search.backend import Action
from marquee_search.embedded.collection import ONE_PASS_HITS, EmbeddedCollection
from marquee_search.schema import schema_from_request

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
