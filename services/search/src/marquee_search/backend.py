"""What a search engine must do for the service: the interface both backends implement.

The servicer validates requests against the collection's schema first, so a
backend receives checked input (a parsed filter, known fields, a page within
bounds) and answers in the plain types below. Failures a caller can act on are
the exceptions here; the servicer maps them to status codes.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any, Protocol

from marquee_search.expressions import Filter, SortClause
from marquee_search.schema import CollectionSchema, FieldSpec


class CollectionNotFound(LookupError):
    pass


class SchemaConflict(Exception):
    """EnsureCollection asked for a schema the existing collection cannot take."""


class EngineUnavailable(Exception):
    """The engine cannot be reached (or its breaker is open); callers may retry later."""


class EngineRejected(Exception):
    """The engine refused a request the service had accepted (a bug or an engine limit)."""


class Action(enum.Enum):
    CREATE = "create"
    UPSERT = "upsert"
    UPDATE = "update"
    EMPLACE = "emplace"


class ReindexStopped(Exception):
    """A reindex was asked to stop (its job was cancelled); the previous index stays."""


class ReindexProgress:
    """A reindex's counts, written by the engine (perhaps from a worker thread), read by its job.

    Plain attributes: one writer, and a reader that only needs a recent value.
    `stop` asks the engine to abandon the rebuild at the next document.
    """

    def __init__(self) -> None:
        self.done = 0
        self.total = 0
        self.stop = False


@dataclass
class CollectionInfo:
    schema: CollectionSchema
    num_documents: int


@dataclass
class DocResult:
    ok: bool
    error: str = ""


@dataclass(frozen=True)
class SearchQuery:
    """A checked search: tokens are non-empty unless the query matches everything."""

    q: str
    wildcard: bool
    query_by: tuple[FieldSpec, ...]
    filter: Filter | None
    filter_text: str
    facets: tuple[FieldSpec, ...]
    sort: tuple[SortClause, ...]
    page: int
    per_page: int
    max_facet_values: int
    include_fields: tuple[str, ...]
    exclude_fields: tuple[str, ...]


@dataclass
class Highlight:
    field: str
    snippet: str = ""
    snippets: list[str] = dataclasses.field(default_factory=list)
    matched_tokens: list[str] = dataclasses.field(default_factory=list)


@dataclass
class SearchHit:
    document: dict[str, Any]
    highlights: list[Highlight]
    text_match: int


@dataclass
class SearchResult:
    hits: list[SearchHit]
    facet_counts: list[tuple[str, list[tuple[str, int]]]]
    found: int
    out_of: int
    search_seconds: float


class SearchBackend(Protocol):
    async def ensure_collection(self, schema: CollectionSchema) -> tuple[CollectionInfo, bool]:
        """(the collection as it now is, created); SchemaConflict if incompatible."""

    async def get_collection(self, name: str) -> CollectionInfo: ...

    async def schema(self, name: str) -> CollectionSchema:
        """The schema requests are checked against; may lag a change made elsewhere briefly."""

    async def delete_collection(self, name: str) -> bool: ...

    async def index(
        self,
        name: str,
        documents: list[dict[str, Any]],
        action: Action,
        sources: list[str | None] | None = None,
    ) -> list[DocResult]:
        """One result per document, in order; every document has a string id.

        `sources[i]`, when not None, is documents[i] as the request's JSON text.
        """

    async def delete_ids(self, name: str, ids: list[str]) -> int: ...

    async def delete_filter(self, name: str, filter_: Filter, filter_text: str) -> int: ...

    async def search(self, name: str, query: SearchQuery) -> SearchResult: ...

    async def reindex(self, name: str, progress: ReindexProgress) -> None:
        """Rebuild the collection's index from its stored documents, counting into `progress`.

        Queries keep answering from the current index meanwhile; a failure leaves it in use.
        """

    async def close(self) -> None: ...
