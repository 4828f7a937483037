"""A small book catalogue and helpers shared by the search tests."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from marquee.search.v1 import search_pb2 as pb

if TYPE_CHECKING:
    from marquee.search.v1.search_pb2_grpc import SearchServiceAsyncStub as Stub

FIELDS = [
    pb.Field(name="title", type=pb.FIELD_TYPE_STRING),
    pb.Field(name="author", type=pb.FIELD_TYPE_STRING, facet=True),
    pb.Field(name="tags", type=pb.FIELD_TYPE_STRING_ARRAY, facet=True, optional=True),
    pb.Field(name="year", type=pb.FIELD_TYPE_INT32, facet=True),
    pb.Field(name="rating", type=pb.FIELD_TYPE_FLOAT),
    pb.Field(name="in_stock", type=pb.FIELD_TYPE_BOOL, facet=True),
]

BOOKS: list[dict[str, Any]] = [
    {"id": "1", "title": "Harry Potter and the Philosopher's Stone", "author": "J.K. Rowling",
     "tags": ["fantasy", "kids"], "year": 1997, "rating": 4.5, "in_stock": True},
    {"id": "2", "title": "The Hobbit", "author": "J.R.R. Tolkien", "tags": ["fantasy"],
     "year": 1937, "rating": 4.7, "in_stock": False},
    {"id": "3", "title": "Harriet the Spy", "author": "Louise Fitzhugh", "year": 1964,
     "rating": 3.9, "in_stock": True},
    {"id": "4", "title": "Anti-virus Handbook", "author": "Rock Star", "tags": ["tech"],
     "year": 2001, "rating": 3.0, "in_stock": True},
    {"id": "5", "title": "Potter's Field", "author": "Rock Star", "tags": [], "year": 2001,
     "rating": 3.0, "in_stock": False},
    {"id": "6", "title": "The Lord of the Rings", "author": "J.R.R. Tolkien",
     "tags": ["fantasy", "epic"], "year": 1954, "rating": 4.9, "in_stock": True},
    {"id": "7", "title": "Dune", "author": "Frank Herbert", "tags": ["scifi", "epic"],
     "year": 1965, "rating": 4.6, "in_stock": True},
    {"id": "8", "title": "Neuromancer", "author": "William Gibson", "tags": ["scifi"],
     "year": 1984, "rating": 4.1, "in_stock": False},
]  # fmt: skip


def as_json(doc: dict[str, Any]) -> pb.Document:
    return pb.Document(json=json.dumps(doc))


async def make_books(stub: Stub, name: str, books: Sequence[dict[str, Any]] = BOOKS) -> None:
    await stub.EnsureCollection(pb.EnsureCollectionRequest(name=name, fields=FIELDS))
    if not books:
        return
    reply = await stub.Index(
        pb.IndexRequest(collection=name, documents=[as_json(b) for b in books])
    )
    assert reply.failure_count == 0, reply


def ids(reply: pb.SearchResponse) -> list[str]:
    return [hit.document.fields["id"].string_value for hit in reply.hits]


def document(hit: pb.Hit) -> dict[str, Any]:
    return json_format.MessageToDict(hit.document)


def facets(reply: pb.SearchResponse) -> dict[str, list[tuple[str, int]]]:
    return {f.field_name: [(c.value, c.count) for c in f.counts] for f in reply.facet_counts}


def violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)
    assert status is not None, "no google.rpc.Status in the trailers"
    result = {}
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            result.update({v.field: v.description for v in bad.field_violations})
    return result


async def expect_code(code: grpc.StatusCode, call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == code, info.value.details()
    return info.value
