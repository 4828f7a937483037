"""Bad requests: INVALID_ARGUMENT with one field violation per problem, NOT_FOUND, and limits.

Checked before any engine is asked, so the embedded backend stands for both.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from search_support import BOOKS, FIELDS, as_json, expect_code, make_books, violations

from marquee.search.v1 import search_pb2 as pb
from marquee_search.settings import SearchSettings

if TYPE_CHECKING:
    from marquee.search.v1.search_pb2_grpc import SearchServiceAsyncStub as Stub

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def settings(tmp_path: Path) -> SearchSettings:
    return SearchSettings(grpc_port=0, metrics_port=-1, data_dir=tmp_path, max_documents=5)


async def test_ensure_collection_reports_every_problem(stub: Stub) -> None:
    request = pb.EnsureCollectionRequest(
        name="bad name!",
        fields=[
            pb.Field(name="title", type=pb.FIELD_TYPE_STRING, sort=True),
            pb.Field(name="title", type=pb.FIELD_TYPE_STRING),
            pb.Field(name="where", type=pb.FIELD_TYPE_GEOPOINT),
            pb.Field(name="any", type=pb.FIELD_TYPE_AUTO),
            pb.Field(name="price", type=pb.FIELD_TYPE_FLOAT, facet=True),
            pb.Field(name="id", type=pb.FIELD_TYPE_STRING),
            pb.Field(name="a.b", type=pb.FIELD_TYPE_STRING),
            pb.Field(name="kind", type=99),  # type: ignore[arg-type]
            pb.Field(name="hidden", type=pb.FIELD_TYPE_STRING, index=False),
        ],
        default_sorting_field="nope",
    )
    error = await expect_code(INVALID, stub.EnsureCollection(request))
    assert set(violations(error)) == {
        "name",
        "fields[0].sort",
        "fields[1].name",
        "fields[2].type",
        "fields[3].type",
        "fields[4].facet",
        "fields[5].name",
        "fields[6].name",
        "fields[7].type",
        "fields[8].optional",
        "default_sorting_field",
    }


@pytest.mark.parametrize(
    ("fields", "default", "field"),
    [
        ([], "", "fields"),
        (FIELDS, "title", "default_sorting_field"),
        (
            [pb.Field(name="n", type=pb.FIELD_TYPE_INT32, optional=True)],
            "n",
            "default_sorting_field",
        ),
    ],
)
async def test_ensure_collection_schema_rules(
    stub: Stub, fields: list[pb.Field], default: str, field: str
) -> None:
    request = pb.EnsureCollectionRequest(name="ok", fields=fields, default_sorting_field=default)
    error = await expect_code(INVALID, stub.EnsureCollection(request))
    assert field in violations(error)


async def test_unknown_collection_is_not_found(stub: Stub) -> None:
    await expect_code(
        grpc.StatusCode.NOT_FOUND, stub.GetCollection(pb.GetCollectionRequest(name="nope"))
    )
    await expect_code(
        grpc.StatusCode.NOT_FOUND,
        stub.Index(pb.IndexRequest(collection="nope", documents=[as_json({"id": "1"})])),
    )
    await expect_code(
        grpc.StatusCode.NOT_FOUND, stub.Delete(pb.DeleteRequest(collection="nope", ids=["1"]))
    )
    await expect_code(
        grpc.StatusCode.NOT_FOUND, stub.Search(pb.SearchRequest(collection="nope", q="*"))
    )


async def test_names_are_checked(stub: Stub) -> None:
    for call in (
        stub.GetCollection(pb.GetCollectionRequest(name="")),
        stub.DeleteCollection(pb.DeleteCollectionRequest(name="a/b")),
        stub.Search(pb.SearchRequest(collection="x" * 65, q="*")),
    ):
        error = await expect_code(INVALID, call)
        assert violations(error)


async def test_index_request_limits(stub: Stub, collection: str) -> None:
    await make_books(stub, collection, [])
    error = await expect_code(INVALID, stub.Index(pb.IndexRequest(collection=collection)))
    assert "documents" in violations(error)
    six = [as_json({"id": str(i)}) for i in range(6)]
    error = await expect_code(
        INVALID, stub.Index(pb.IndexRequest(collection=collection, documents=six))
    )
    assert "at most 5" in violations(error)["documents"]
    error = await expect_code(
        INVALID,
        stub.Index(
            pb.IndexRequest(collection=collection, documents=six[:1], action=42)  # type: ignore[arg-type]
        ),
    )
    assert "action" in violations(error)


@pytest.mark.parametrize(
    ("request_kwargs", "field"),
    [
        ({}, "ids"),
        ({"ids": ["1"], "filter_by": "year:>1"}, "ids"),
        ({"ids": [""]}, "ids[0]"),
        ({"filter_by": "year:!=2001"}, "filter_by"),
        ({"filter_by": "nope:=1"}, "filter_by"),
    ],
)
async def test_bad_delete(
    stub: Stub, collection: str, request_kwargs: dict[str, object], field: str
) -> None:
    await make_books(stub, collection, [])
    request = pb.DeleteRequest(collection=collection, **request_kwargs)  # type: ignore[arg-type]
    error = await expect_code(INVALID, stub.Delete(request))
    assert field in violations(error)


@pytest.mark.parametrize(
    ("request_kwargs", "field"),
    [
        ({"q": "harry"}, "query_by"),
        ({"q": "harry", "query_by": ["nope"]}, "query_by[0]"),
        ({"q": "harry", "query_by": ["year"]}, "query_by[0]"),
        ({"filter_by": "year:!=2001"}, "filter_by"),
        ({"filter_by": "year:>1.5"}, "filter_by"),
        ({"filter_by": "year:>abc"}, "filter_by"),
        ({"filter_by": "author:>x"}, "filter_by"),
        ({"filter_by": "year:[1..2"}, "filter_by"),
        ({"filter_by": "(year:>1"}, "filter_by"),
        ({"filter_by": "year:>1)"}, "filter_by"),
        ({"filter_by": "rating:>"}, "filter_by"),
        ({"filter_by": "in_stock:maybe"}, "filter_by"),
        ({"filter_by": "year:1..5"}, "filter_by"),
        ({"filter_by": "year>1"}, "filter_by"),
        ({"filter_by": "author:=`open"}, "filter_by"),
        ({"filter_by": "x" * 5000}, "filter_by"),
        ({"facet_by": ["title"]}, "facet_by"),
        ({"facet_by": ["nope"]}, "facet_by"),
        ({"sort_by": ["title:asc"]}, "sort_by"),
        ({"sort_by": ["year"]}, "sort_by"),
        ({"sort_by": ["year:up"]}, "sort_by"),
        ({"sort_by": ["year:asc", "rating:asc", "year:desc", "_text_match:desc"]}, "sort_by"),
        ({"per_page": 251}, "per_page"),
        ({"page": -1}, "page"),
        ({"max_facet_values": -1}, "max_facet_values"),
        ({"include_fields": ["a,b"]}, "include_fields[0]"),
    ],
)
async def test_bad_search(
    stub: Stub, collection: str, request_kwargs: dict[str, object], field: str
) -> None:
    await make_books(stub, collection, [])
    kwargs = {"q": "*", **request_kwargs}
    request = pb.SearchRequest(collection=collection, **kwargs)  # type: ignore[arg-type]
    error = await expect_code(INVALID, stub.Search(request))
    assert field in violations(error), violations(error)


async def test_search_reports_all_problems_at_once(stub: Stub, collection: str) -> None:
    await make_books(stub, collection, [])
    request = pb.SearchRequest(
        collection=collection, q="x", filter_by="year:<", sort_by=["title:asc"], per_page=999
    )
    error = await expect_code(INVALID, stub.Search(request))
    assert set(violations(error)) == {"query_by", "filter_by", "sort_by", "per_page"}


async def test_writes_racing_a_drop_are_done_or_not_found(stub: Stub, collection: str) -> None:
    for _ in range(5):
        await make_books(stub, collection, [])
        write = asyncio.ensure_future(
            stub.Index(pb.IndexRequest(collection=collection, documents=[as_json(BOOKS[0])]))
        )
        drop = asyncio.ensure_future(
            stub.DeleteCollection(pb.DeleteCollectionRequest(name=collection))
        )
        assert (await drop).deleted
        outcome = (await asyncio.gather(write, return_exceptions=True))[0]
        if isinstance(outcome, grpc.aio.AioRpcError):
            assert outcome.code() == grpc.StatusCode.NOT_FOUND, outcome.details()
        else:
            assert isinstance(outcome, pb.IndexResponse)
            assert outcome.success_count == 1
