"""The contract, run against each backend (embedded and a real Typesense) with the same answers.

Every expectation below is written once and must hold for both backends: that
is the proof that they answer alike. Where ranking may tie, results are
compared as sets or with ties in insertion order (newest first), which is how
Typesense breaks them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
import pytest
from google.protobuf import struct_pb2
from search_support import BOOKS, FIELDS, as_json, document, expect_code, facets, ids, make_books

from marquee.search.v1 import search_pb2 as pb

if TYPE_CHECKING:
    from marquee.search.v1.search_pb2_grpc import SearchServiceAsyncStub as Stub

TITLE_AUTHOR = ["title", "author"]
# 1999.0 is a float in JSON: an int32 field refuses it (no silent coercion).
WHOLE_FLOAT_YEAR = (
    '{"id": "c", "title": "t", "author": "a", "year": 1999.0, "rating": 1, "in_stock": true}'
)


async def search(stub: Stub, name: str, **kwargs: object) -> pb.SearchResponse:
    return await stub.Search(pb.SearchRequest(collection=name, **kwargs))  # type: ignore[arg-type]


# ---- collections ----------------------------------------------------------------------------


async def test_ensure_creates_then_is_idempotent(stub: Stub, collection: str) -> None:
    first = await stub.EnsureCollection(pb.EnsureCollectionRequest(name=collection, fields=FIELDS))
    assert first.created
    assert [f.name for f in first.collection.fields] == [f.name for f in FIELDS]
    year = next(f for f in first.collection.fields if f.name == "year")
    assert (year.sort, year.facet, year.index, year.optional) == (True, True, True, False)
    title = next(f for f in first.collection.fields if f.name == "title")
    assert (title.sort, title.facet) == (False, False)
    again = await stub.EnsureCollection(pb.EnsureCollectionRequest(name=collection, fields=FIELDS))
    assert not again.created
    assert again.collection == first.collection


async def test_get_and_delete_collection(stub: Stub, collection: str) -> None:
    await make_books(stub, collection)
    got = await stub.GetCollection(pb.GetCollectionRequest(name=collection))
    assert got.collection.num_documents == len(BOOKS)
    assert got.collection.name == collection
    assert (await stub.DeleteCollection(pb.DeleteCollectionRequest(name=collection))).deleted
    assert not (await stub.DeleteCollection(pb.DeleteCollectionRequest(name=collection))).deleted
    await expect_code(
        grpc.StatusCode.NOT_FOUND, stub.GetCollection(pb.GetCollectionRequest(name=collection))
    )


async def test_compatible_change_adds_an_optional_field(stub: Stub, collection: str) -> None:
    await make_books(stub, collection)
    pages = pb.Field(name="pages", type=pb.FIELD_TYPE_INT32, optional=True)
    changed = await stub.EnsureCollection(
        pb.EnsureCollectionRequest(name=collection, fields=[*FIELDS, pages])
    )
    assert not changed.created
    assert changed.collection.fields[-1].name == "pages"
    assert changed.collection.num_documents == len(BOOKS)
    doc = {**BOOKS[0], "id": "p", "pages": 320}
    assert (
        await stub.Index(pb.IndexRequest(collection=collection, documents=[as_json(doc)]))
    ).success_count == 1
    assert ids(await search(stub, collection, q="*", filter_by="pages:>100")) == ["p"]
    assert (await search(stub, collection, q="harry", query_by=["title"])).found == 3


@pytest.mark.parametrize(
    "fields",
    [
        [*FIELDS[:3], pb.Field(name="year", type=pb.FIELD_TYPE_INT64, facet=True), *FIELDS[4:]],
        FIELDS[:-1],
        [*FIELDS, pb.Field(name="pages", type=pb.FIELD_TYPE_INT32)],
        [FIELDS[0], pb.Field(name="author", type=pb.FIELD_TYPE_STRING), *FIELDS[2:]],
    ],
    ids=["type change", "dropped field", "new required field", "facet dropped"],
)
async def test_incompatible_change_is_failed_precondition(
    stub: Stub, collection: str, fields: list[pb.Field]
) -> None:
    await make_books(stub, collection)
    error = await expect_code(
        grpc.StatusCode.FAILED_PRECONDITION,
        stub.EnsureCollection(pb.EnsureCollectionRequest(name=collection, fields=fields)),
    )
    assert "incompatible" in (error.details() or "")
    got = await stub.GetCollection(pb.GetCollectionRequest(name=collection))
    assert [f.name for f in got.collection.fields] == [f.name for f in FIELDS]


# ---- indexing -------------------------------------------------------------------------------


async def test_index_reports_every_document_and_swallows_nothing(
    stub: Stub, collection: str
) -> None:
    await stub.EnsureCollection(pb.EnsureCollectionRequest(name=collection, fields=FIELDS))
    good = dict(BOOKS[0], id="a")
    struct = struct_pb2.Struct()
    struct.update({**BOOKS[1], "id": "s", "year": 2000})  # a Struct's numbers are doubles
    no_id = {k: v for k, v in BOOKS[2].items() if k != "id"}
    documents = [
        as_json(good),
        as_json({k: v for k, v in good.items() if k not in ("id", "author")}),
        as_json(dict(good, id="b", year="1999")),
        pb.Document(json=WHOLE_FLOAT_YEAR),
        pb.Document(json="{not json"),
        pb.Document(json="[1, 2]"),
        as_json(dict(good, id=5)),
        as_json(dict(good, title="duplicate")),
        as_json(no_id),
        pb.Document(fields=struct),
        as_json(dict(good, id="t", tags="fantasy")),
        pb.Document(),
    ]  # fmt: skip
    reply = await stub.Index(pb.IndexRequest(collection=collection, documents=documents))
    oks = [r.ok for r in reply.results]
    assert oks == [True, False, False, False, False, False, False, False, True, True, False, False]
    assert [r.index for r in reply.results] == list(range(len(documents)))
    assert (reply.success_count, reply.failure_count) == (3, 9)
    assert all(r.error for r in reply.results if not r.ok)
    assert all(not r.error for r in reply.results if r.ok)
    assert reply.results[0].id == "a"
    assert reply.results[2].id == "b"
    assert reply.results[9].id == "s"
    generated = reply.results[8].id
    assert generated
    found = await search(stub, collection, q="*", per_page=10)
    assert sorted(ids(found)) == sorted(["a", generated, "s"])
    assert (
        document((await search(stub, collection, q="*", filter_by="year:=2000")).hits[0])["id"]
        == "s"
    )
    assert document(found.hits[1]) == dict(no_id, id=generated)  # newest first


async def test_upsert_update_emplace(stub: Stub, collection: str) -> None:
    await make_books(stub, collection, BOOKS[:2])

    async def index(action: pb.IndexAction.ValueType, *docs: dict[str, object]) -> list[bool]:
        reply = await stub.Index(
            pb.IndexRequest(
                collection=collection, documents=[as_json(d) for d in docs], action=action
            )
        )
        return [r.ok for r in reply.results]

    assert await index(
        pb.INDEX_ACTION_UPDATE, {"id": "1", "rating": 1.5}, {"id": "nope", "rating": 1}
    ) == [True, False]
    assert await index(pb.INDEX_ACTION_UPDATE, {"rating": 1}) == [False]
    hit = (await search(stub, collection, q="*", filter_by="rating:<2")).hits
    assert [document(h)["title"] for h in hit] == [BOOKS[0]["title"]]
    replacement = {k: v for k, v in BOOKS[0].items() if k != "tags"}
    assert await index(pb.INDEX_ACTION_UPSERT, replacement) == [True]
    got = document((await search(stub, collection, q="*", filter_by="year:=1997")).hits[0])
    assert got == replacement, "upsert replaces the whole document"
    assert await index(
        pb.INDEX_ACTION_EMPLACE, {"id": "2", "year": 1938}, {"id": "9", "year": 1}
    ) == [True, False]
    assert ids(await search(stub, collection, q="*", filter_by="year:=1938")) == ["2"]
    assert await index(pb.INDEX_ACTION_CREATE, BOOKS[0]) == [False]
    assert (
        await stub.GetCollection(pb.GetCollectionRequest(name=collection))
    ).collection.num_documents == 2


async def test_delete_by_ids_and_by_filter(stub: Stub, collection: str) -> None:
    await make_books(stub, collection)
    by_ids = await stub.Delete(pb.DeleteRequest(collection=collection, ids=["1", "2", "nope"]))
    assert by_ids.deleted_count == 2
    by_filter = await stub.Delete(pb.DeleteRequest(collection=collection, filter_by="year:>2000"))
    assert by_filter.deleted_count == 2
    left = await search(stub, collection, q="*")
    assert sorted(ids(left)) == ["3", "6", "7", "8"]
    assert left.out_of == 4


# ---- searching ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("harry potter", {"1"}),
        ("harry rowling", {"1"}),  # tokens may match in different fields
        ("har", {"1", "3"}),  # the last token is a prefix
        ("hary", {"1", "3"}),  # one typo, also inside a prefix
        ("hobibt", {"2"}),  # a transposition is one typo
        ("tolkein", {"2", "6"}),
        ("pot harry", set()),  # only the last token is a prefix; 3 letters allow no typo
        ("potter", {"1", "5"}),  # "Potter's" is the token "potters"
        ("potters field", {"5"}),
        ("antivirus", {"4"}),  # punctuation inside a word is dropped
        ("virus", set()),
        ("the", {"1", "2", "3", "6"}),
        ("lord rings", {"6"}),
        ("rock", {"4", "5"}),
        ("tolkien hobbit", {"2"}),
        ("potter hobbit", set()),  # every token must match: none are dropped
        ("j.k.", {"1"}),
        ("!!! ...", {str(i) for i in range(1, 9)}),  # no token at all: like "*"
    ],
)
async def test_text_queries(stub: Stub, collection: str, q: str, expected: set[str]) -> None:
    await make_books(stub, collection)
    reply = await search(stub, collection, q=q, query_by=TITLE_AUTHOR, per_page=50)
    assert set(ids(reply)) == expected
    assert reply.found == len(expected)
    assert reply.out_of == len(BOOKS)


async def test_accents_and_special_letters_fold_to_ascii(stub: Stub, collection: str) -> None:
    fields = [pb.Field(name="title", type=pb.FIELD_TYPE_STRING)]
    await stub.EnsureCollection(pb.EnsureCollectionRequest(name=collection, fields=fields))
    docs = [{"id": "1", "title": "Café Society Über"}, {"id": "2", "title": "Straße naïve ÆON"}]
    await stub.Index(pb.IndexRequest(collection=collection, documents=[as_json(d) for d in docs]))
    for q, expected in [
        ("cafe", "1"), ("café", "1"), ("uber", "1"), ("strasse", "2"), ("straße", "2"),
        ("naive", "2"), ("aeon", "2"), ("æon", "2"),
    ]:  # fmt: skip
        reply = await search(stub, collection, q=q, query_by=["title"])
        assert ids(reply) == [expected], q
    exact = await search(stub, collection, q="*", filter_by="title:=CAFÉ society uber")
    assert ids(exact) == ["1"]
    marked = await search(stub, collection, q="stras", query_by=["title"])
    assert marked.hits[0].highlights[0].snippet == "<mark>Straß</mark>e naïve ÆON"


@pytest.mark.parametrize(
    ("q", "query_by", "expected"),
    [
        ("harry", ["title"], ["1", "3"]),  # no typo before a typo
        ("potter", ["title"], ["1", "5"]),  # a whole word before a completed prefix
        ("hary", ["title"], ["1", "3"]),  # a typo in a whole word before one in a prefix
        ("the", ["title"], ["6", "3", "2", "1"]),  # ties: newest first
        ("har", ["title"], ["3", "1"]),
        ("t", ["title", "author"], ["6", "3", "2", "1"]),
        ("tolkien", ["title", "author"], ["6", "2"]),
        ("rock", ["author", "title"], ["5", "4"]),
        ("epic", ["tags", "title"], ["7", "6"]),
    ],
)
async def test_relevance_order(
    stub: Stub, collection: str, q: str, query_by: list[str], expected: list[str]
) -> None:
    await make_books(stub, collection)
    reply = await search(stub, collection, q=q, query_by=query_by, per_page=20)
    assert ids(reply) == expected
    scores = [hit.text_match for hit in reply.hits]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(
    ("filter_by", "expected"),
    [
        ("author:=Rock Star", {"4", "5"}),
        ("author:=rock star", {"4", "5"}),  # exact, but case and punctuation are ignored
        ("author:=`Rock Star`", {"4", "5"}),
        ("author:=Rock", set()),
        ("author:rock", {"4", "5"}),  # contains the word
        ("author:star rock", {"4", "5"}),
        ("author:=[Rock Star, J.K. Rowling]", {"1", "4", "5"}),
        ("author:!=[Rock Star,J.R.R. Tolkien]", {"1", "3", "7", "8"}),
        ("tags:=fantasy", {"1", "2", "6"}),
        ("tags:fantasy", {"1", "2", "6"}),
        ("tags:[kids,tech]", {"1", "4"}),
        ("tags:=[scifi,tech]", {"4", "7", "8"}),
        ("tags:!=fantasy", {"3", "4", "5", "7", "8"}),  # no tags at all counts as not equal
        ("tags:=`fantasy kids`", set()),  # one element whole, not two in a row
        ("tags:=[kids, epic]", {"1", "6", "7"}),
        ("author:=J.R.R.", set()),  # a value's first word is not the value
        ("author:=Tolkien", set()),  # nor its last
        ("year:>1964", {"1", "4", "5", "7", "8"}),
        ("year:1954", {"6"}),
        ("year:>=1964 && year:<=1984", {"3", "7", "8"}),
        ("year:[1900..1960, 2001]", {"2", "4", "5", "6"}),
        ("year:=[1937,1965]", {"2", "7"}),
        ("rating:>3.9", {"1", "2", "6", "7", "8"}),  # compared as float32, like Typesense
        ("rating:<=3.9", {"3", "4", "5"}),
        ("rating:[4.5..4.7]", {"1", "2", "7"}),
        ("in_stock:false", {"2", "5", "8"}),
        ("in_stock:=[true,false]", {str(i) for i in range(1, 9)}),
        ("in_stock:true && year:<1970", {"3", "6", "7"}),
        ("year:>2000 || in_stock:false && year:<1950", {"2"}),  # left to right
        ("(in_stock:false && year:<1950) || year:>2000", {"2", "4", "5"}),
        ("in_stock:true && (author:=Rock Star || tags:=scifi)", {"4", "7"}),
    ],
)
async def test_filters(stub: Stub, collection: str, filter_by: str, expected: set[str]) -> None:
    await make_books(stub, collection)
    reply = await search(stub, collection, q="*", filter_by=filter_by, per_page=50)
    assert set(ids(reply)) == expected
    assert reply.found == len(expected)


async def test_query_and_filter_together(stub: Stub, collection: str) -> None:
    await make_books(stub, collection)
    reply = await search(stub, collection, q="the", query_by=["title"], filter_by="in_stock:true")
    assert set(ids(reply)) == {"1", "3", "6"}


def by_count(counts: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Most frequent first, as both must answer; ties (any order) put in value order."""
    assert [c for _, c in counts] == sorted((c for _, c in counts), reverse=True)
    return sorted(counts, key=lambda pair: (-pair[1], pair[0]))


async def test_facet_counts(stub: Stub, collection: str) -> None:
    await make_books(stub, collection)
    reply = await search(stub, collection, q="*", facet_by=["author", "tags", "year", "in_stock"])
    counts = facets(reply)
    assert [f.field_name for f in reply.facet_counts] == ["author", "tags", "year", "in_stock"]
    assert by_count(counts["author"]) == [
        ("J.R.R. Tolkien", 2), ("Rock Star", 2), ("Frank Herbert", 1), ("J.K. Rowling", 1),
        ("Louise Fitzhugh", 1), ("William Gibson", 1),
    ]  # fmt: skip
    assert by_count(counts["tags"]) == [
        ("fantasy", 3),
        ("epic", 2),
        ("scifi", 2),
        ("kids", 1),
        ("tech", 1),
    ]
    assert by_count(counts["year"])[0] == ("2001", 2)
    assert len(counts["year"]) == 7
    assert by_count(counts["in_stock"]) == [("true", 5), ("false", 3)]
    filtered = await search(
        stub, collection, q="*", filter_by="year:<1970", facet_by=["author"], max_facet_values=1
    )
    assert facets(filtered)["author"] == [("J.R.R. Tolkien", 2)]
    texted = await search(stub, collection, q="fantasy", query_by=["tags"], facet_by=["author"])
    assert by_count(facets(texted)["author"]) == [("J.R.R. Tolkien", 2), ("J.K. Rowling", 1)]


async def test_sort_and_paging(stub: Stub, collection: str) -> None:
    await make_books(stub, collection)
    # Books 4 and 5 tie on year and rating: the newest document comes first.
    sort = ["year:asc", "rating:desc"]
    every = await search(stub, collection, q="*", sort_by=sort, per_page=10)
    assert ids(every) == ["2", "6", "3", "7", "8", "1", "5", "4"]
    second = await search(stub, collection, q="*", sort_by=sort, per_page=3, page=2)
    assert (ids(second), second.page, second.found) == (["7", "8", "1"], 2, 8)
    assert ids(await search(stub, collection, q="*", sort_by=sort, per_page=3, page=3)) == [
        "5",
        "4",
    ]
    assert ids(await search(stub, collection, q="*", sort_by=sort, per_page=3, page=4)) == []
    assert ids(await search(stub, collection, q="*")) == ["8", "7", "6", "5", "4", "3", "2", "1"]
    by_rating = await search(stub, collection, q="*", sort_by=["rating:desc"])
    assert ids(by_rating) == ["6", "2", "7", "1", "8", "3", "5", "4"]
    texted = await search(
        stub, collection, q="the", query_by=["title"], sort_by=["year:desc"], per_page=10
    )
    assert ids(texted) == ["1", "3", "6", "2"]


async def test_highlights(stub: Stub, collection: str) -> None:
    await make_books(stub, collection)
    prefix = await search(stub, collection, q="harr", query_by=["title"], filter_by="year:=1964")
    [mark] = prefix.hits[0].highlights
    assert (mark.field, mark.snippet, list(mark.matched_tokens)) == (
        "title",
        "<mark>Harr</mark>iet the Spy",
        ["Harr"],
    )
    exact = await search(stub, collection, q="rowling", query_by=["title", "author"])
    [mark] = exact.hits[0].highlights
    assert (mark.field, mark.snippet, list(mark.matched_tokens)) == (
        "author",
        "J.K. <mark>Rowling</mark>",
        ["Rowling"],
    )
    assert exact.hits[0].text_match > 0
    for q, year, field, snippet in [
        ("hary", 1964, "title", "<mark>Harr</mark>iet the Spy"),  # a typo inside a prefix
        ("harriot", 1964, "title", "<mark>Harriet</mark> the Spy"),
        ("hobbi", 1937, "title", "The <mark>Hobbi</mark>t"),
        ("tolkein", 1937, "author", "J.R.R. <mark>Tolkien</mark>"),
        ("potters", 2001, "title", "<mark>Potter's</mark> Field"),
    ]:
        reply = await search(
            stub, collection, q=q, query_by=["title", "author"], filter_by=f"year:={year}"
        )
        [mark] = reply.hits[0].highlights
        assert (mark.field, mark.snippet) == (field, snippet), q
    typo = await search(stub, collection, q="hary pot", query_by=["title"])
    [mark] = typo.hits[0].highlights
    assert (mark.snippet, list(mark.matched_tokens)) == (
        "<mark>Harry</mark> <mark>Pot</mark>ter and the Philosopher's Stone",
        ["Harry", "Pot"],
    )
    array = await search(stub, collection, q="epic", query_by=["tags"], filter_by="year:=1965")
    [mark] = array.hits[0].highlights
    assert (mark.field, list(mark.snippets), list(mark.matched_tokens)) == (
        "tags",
        ["<mark>epic</mark>"],
        ["epic"],
    )
    assert (await search(stub, collection, q="*")).hits[0].highlights == []


async def test_include_and_exclude_fields(stub: Stub, collection: str) -> None:
    await make_books(stub, collection)
    only = await search(stub, collection, q="*", filter_by="year:=1965", include_fields=["title"])
    assert document(only.hits[0]) == {"title": "Dune"}
    without = await search(
        stub, collection, q="*", filter_by="year:=1965", exclude_fields=["tags", "rating"]
    )
    assert document(without.hits[0]) == {
        "id": "7", "title": "Dune", "author": "Frank Herbert", "year": 1965, "in_stock": True
    }  # fmt: skip


async def test_default_sorting_field(stub: Stub, collection: str) -> None:
    await stub.EnsureCollection(
        pb.EnsureCollectionRequest(name=collection, fields=FIELDS, default_sorting_field="year")
    )
    reply = await stub.Index(
        pb.IndexRequest(collection=collection, documents=[as_json(b) for b in BOOKS])
    )
    assert reply.failure_count == 0
    got = await stub.GetCollection(pb.GetCollectionRequest(name=collection))
    assert got.collection.default_sorting_field == "year"
    # Newest first among equal years (4 and 5).
    assert ids(await search(stub, collection, q="*")) == ["5", "4", "1", "8", "7", "3", "6", "2"]
    # Equal relevance, then the default sorting field.
    texted = await search(stub, collection, q="the", query_by=["title"])
    assert ids(texted) == ["1", "3", "6", "2"]
    missing_year = {k: v for k, v in BOOKS[0].items() if k != "year"} | {"id": "x"}
    failed = await stub.Index(
        pb.IndexRequest(collection=collection, documents=[as_json(missing_year)])
    )
    assert failed.failure_count == 1


async def test_replaced_documents_keep_their_place_among_ties(stub: Stub, collection: str) -> None:
    await make_books(stub, collection)
    for action in (pb.INDEX_ACTION_UPSERT, pb.INDEX_ACTION_UPDATE, pb.INDEX_ACTION_EMPLACE):
        reply = await stub.Index(
            pb.IndexRequest(collection=collection, documents=[as_json(BOOKS[0])], action=action)
        )
        assert reply.success_count == 1
        order = ids(await search(stub, collection, q="*"))
        assert order == ["8", "7", "6", "5", "4", "3", "2", "1"], action
