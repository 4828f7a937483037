"""SearchBackend on a Typesense server (0.24 tested), through the official async client.

The parameters sent make Typesense answer the contract the embedded engine
answers too: one typo at most (tokens of 4+ characters), the last token as a
prefix, no dropped tokens, typo and prefix expansion beyond Typesense's default
of 4 candidates (`max_candidates`), whole values as snippets, and documents
checked strictly (`dirty_values=reject`: no silent coercion of a wrong type).
"""

from __future__ import annotations

import asyncio
import json
import time
import warnings
from typing import Any

from typesense import exceptions as ts_errors

from marquee_search.backend import (
    Action,
    CollectionInfo,
    CollectionNotFound,
    DocResult,
    EngineRejected,
    Highlight,
    ReindexProgress,
    ReindexStopped,
    SchemaConflict,
    SearchHit,
    SearchQuery,
    SearchResult,
)
from marquee_search.expressions import Filter
from marquee_search.schema import (
    CollectionSchema,
    FieldSpec,
    Kind,
    added_fields,
    compatibility_problems,
)
from marquee_search.typesense_backend.connection import Connection, Limits

NUM_TYPOS = 1
SNIPPET_THRESHOLD = 1_000_000  # tokens: every value is highlighted whole
DELETE_CONCURRENCY = 16
# Searches and writes are checked against the schema: without this cache each would
# cost a second HTTP request. A change made through another instance of the service
# is seen within this time (ours are seen at once).
SCHEMA_CACHE_SECONDS = 2.0
# Documents per import request when a reindex writes a collection back.
REINDEX_BATCH = 1000


def _field_to_typesense(spec: FieldSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "type": spec.kind.value,
        "facet": spec.facet,
        "sort": spec.sort,
        "index": spec.index,
        "optional": spec.optional,
    }


def _schema_from_typesense(description: dict[str, Any]) -> CollectionSchema:
    fields = []
    for f in description.get("fields", []):
        try:
            kind = Kind(f["type"])
        except ValueError as exc:
            raise EngineRejected(
                f"collection {description.get('name')!r} has a field of type {f['type']!r}, "
                "which this service does not support"
            ) from exc
        fields.append(
            FieldSpec(
                name=f["name"],
                kind=kind,
                facet=bool(f.get("facet", False)),
                sort=bool(f.get("sort", False)),
                index=bool(f.get("index", True)),
                optional=bool(f.get("optional", False)),
            )
        )
    return CollectionSchema(
        str(description["name"]), tuple(fields), str(description.get("default_sorting_field") or "")
    )


class TypesenseBackend:
    def __init__(self, url: str, api_key: str, limits: Limits, max_candidates: int) -> None:
        self._connection = Connection(url, api_key, limits)
        self._client: Any = self._connection.client  # the client's TypedDict overloads, bypassed
        self._max_candidates = max_candidates
        self._schemas: dict[str, tuple[float, CollectionSchema]] = {}

    def _collection(self, name: str) -> Any:
        with warnings.catch_warnings():
            # The 2.x client warns about v30+ APIs each collection object builds eagerly.
            warnings.simplefilter("ignore", DeprecationWarning)
            return self._client.collections[name]

    async def _describe(self, name: str) -> dict[str, Any]:
        try:
            result: dict[str, Any] = await self._connection.call(
                lambda: self._collection(name).retrieve(), idempotent=True
            )
        except ts_errors.ObjectNotFound as exc:
            raise CollectionNotFound(name) from exc
        return result

    async def _info(self, name: str) -> CollectionInfo:
        try:
            description = await self._describe(name)
        except CollectionNotFound:
            self._schemas.pop(name, None)
            raise
        schema = _schema_from_typesense(description)
        self._schemas[name] = (time.monotonic(), schema)
        return CollectionInfo(schema, int(description.get("num_documents", 0)))

    async def schema(self, name: str) -> CollectionSchema:
        cached = self._schemas.get(name)
        if cached is not None and time.monotonic() - cached[0] < SCHEMA_CACHE_SECONDS:
            return cached[1]
        return (await self._info(name)).schema

    async def ensure_collection(self, schema: CollectionSchema) -> tuple[CollectionInfo, bool]:
        try:
            existing = await self._info(schema.name)
        except CollectionNotFound:
            body: dict[str, Any] = {
                "name": schema.name,
                "fields": [_field_to_typesense(f) for f in schema.fields],
            }
            if schema.default_sorting_field:
                body["default_sorting_field"] = schema.default_sorting_field
            try:
                await self._connection.call(
                    lambda: self._client.collections.create(body), idempotent=False
                )
                return await self._info(schema.name), True
            except ts_errors.ObjectAlreadyExists:
                existing = await self._info(schema.name)  # created by a concurrent call
            except ts_errors.TypesenseClientError as exc:
                raise EngineRejected(f"Typesense refused the collection: {exc}") from exc
        problems = compatibility_problems(existing.schema, schema)
        if problems:
            raise SchemaConflict("; ".join(problems))
        new_fields = added_fields(existing.schema, schema)
        if not new_fields:
            return existing, False
        patch = {"fields": [_field_to_typesense(f) for f in new_fields]}
        try:
            await self._connection.call(
                lambda: self._collection(schema.name).update(patch), idempotent=True
            )
        except ts_errors.TypesenseClientError as exc:
            # e.g. a stored document holds a value of another type under the new name.
            raise SchemaConflict(f"Typesense refused the schema change: {exc}") from exc
        return await self._info(schema.name), False

    async def get_collection(self, name: str) -> CollectionInfo:
        return await self._info(name)

    async def delete_collection(self, name: str) -> bool:
        try:
            await self._connection.call(lambda: self._collection(name).delete(), idempotent=True)
        except ts_errors.ObjectNotFound:
            return False
        finally:
            self._schemas.pop(name, None)
        return True

    async def index(
        self,
        name: str,
        bodies: list[dict[str, Any]],
        action: Action,
        sources: list[str | None] | None = None,  # the client encodes the bodies itself
    ) -> list[DocResult]:
        if action is not Action.EMPLACE:
            return [_result(a) for a in await self._import(name, bodies, action)]
        # Typesense 0.24 emplaces a new document without checking its required fields
        # (a half document gets indexed). So: update the ones that exist, create the rest.
        answers = await self._import(name, bodies, Action.UPDATE)
        absent = [i for i, a in enumerate(answers) if not a.get("success") and a.get("code") == 404]
        if absent:
            created = await self._import(name, [bodies[i] for i in absent], Action.CREATE)
            for i, answer in zip(absent, created, strict=True):
                answers[i] = answer
        return [_result(a) for a in answers]

    async def _import(
        self, name: str, bodies: list[dict[str, Any]], action: Action
    ) -> list[dict[str, Any]]:
        params = {"action": action.value, "dirty_values": "reject"}
        # Not idempotent: after a timeout a second CREATE would report "already exists".
        try:
            answers: list[dict[str, Any]] = await self._connection.call(
                lambda: self._collection(name).documents.import_(bodies, params),
                idempotent=action is Action.UPSERT,
            )
        except ts_errors.ObjectNotFound as exc:
            raise CollectionNotFound(name) from exc
        if len(answers) != len(bodies):
            raise EngineRejected(
                f"Typesense answered {len(answers)} results for {len(bodies)} documents"
            )
        return answers

    async def reindex(self, name: str, progress: ReindexProgress) -> None:
        # Typesense keeps its own index; what a reindex can do is have it index
        # every document again: export them, then import them back (UPSERT) in
        # batches. Queries keep answering throughout. A write to a document
        # between its export and its re-import is overwritten by the exported
        # version, so run it while writes are quiet (see the README).
        try:
            exported: str = await self._connection.call(
                lambda: self._collection(name).documents.export(), idempotent=True
            )
        except ts_errors.ObjectNotFound as exc:
            raise CollectionNotFound(name) from exc
        bodies = [json.loads(line) for line in exported.splitlines() if line.strip()]
        progress.total = len(bodies)
        for start in range(0, len(bodies), REINDEX_BATCH):
            if progress.stop:
                raise ReindexStopped(f"reindex of {name!r} stopped")
            batch = bodies[start : start + REINDEX_BATCH]
            answers = await self._import(name, batch, Action.UPSERT)
            failed = [a for a in answers if not a.get("success")]
            if failed:
                raise EngineRejected(
                    f"Typesense refused {len(failed)} documents on re-import: {failed[0]}"
                )
            progress.done += len(batch)

    async def delete_ids(self, name: str, ids: list[str]) -> int:
        await self._describe(name)  # NOT_FOUND for an unknown collection, not zero deletions
        limit = asyncio.Semaphore(DELETE_CONCURRENCY)

        async def delete_one(doc_id: str) -> int:
            async with limit:
                try:
                    await self._connection.call(
                        lambda: self._collection(name).documents[doc_id].delete(),
                        idempotent=True,
                    )
                except ts_errors.ObjectNotFound:
                    return 0
                return 1

        return sum(await asyncio.gather(*(delete_one(i) for i in dict.fromkeys(ids))))

    async def delete_filter(self, name: str, filter_: Filter, filter_text: str) -> int:
        try:
            answer: dict[str, Any] = await self._connection.call(
                lambda: self._collection(name).documents.delete({"filter_by": filter_text}),
                idempotent=True,
            )
        except ts_errors.ObjectNotFound as exc:
            raise CollectionNotFound(name) from exc
        return int(answer.get("num_deleted", 0))

    async def search(self, name: str, query: SearchQuery) -> SearchResult:
        params: dict[str, Any] = {
            "q": "*" if query.wildcard else query.q,
            "page": query.page,
            "per_page": query.per_page,
            "num_typos": NUM_TYPOS,
            "min_len_1typo": 4,
            "typo_tokens_threshold": 2**31 - 1,
            "drop_tokens_threshold": 0,
            "max_candidates": self._max_candidates,
            "snippet_threshold": SNIPPET_THRESHOLD,
        }
        if query.query_by:
            params["query_by"] = ",".join(f.name for f in query.query_by)
        if query.filter_text.strip():
            params["filter_by"] = query.filter_text
        if query.facets:
            params["facet_by"] = ",".join(f.name for f in query.facets)
            params["max_facet_values"] = query.max_facet_values
        if query.sort:
            params["sort_by"] = ",".join(
                f"{c.field}:{'desc' if c.descending else 'asc'}" for c in query.sort
            )
        if query.include_fields:
            params["include_fields"] = ",".join(query.include_fields)
        if query.exclude_fields:
            params["exclude_fields"] = ",".join(query.exclude_fields)
        started = time.perf_counter()
        try:
            answer: dict[str, Any] = await self._connection.call(
                lambda: self._collection(name).documents.search(params), idempotent=True
            )
        except ts_errors.ObjectNotFound as exc:
            raise CollectionNotFound(name) from exc
        except ts_errors.RequestMalformed as exc:
            raise EngineRejected(f"Typesense refused the query: {exc}") from exc
        elapsed = answer.get("search_time_ms")
        hits = [
            SearchHit(
                document=hit.get("document", {}),
                highlights=[_highlight(h) for h in hit.get("highlights", [])],
                text_match=0 if query.wildcard else int(hit.get("text_match", 0)),
            )
            for hit in answer.get("hits", [])
        ]
        facets = {
            f["field_name"]: [(str(c["value"]), int(c["count"])) for c in f.get("counts", [])]
            for f in answer.get("facet_counts", [])
        }
        return SearchResult(
            hits=hits,
            facet_counts=[(spec.name, facets.get(spec.name, [])) for spec in query.facets],
            found=int(answer.get("found", 0)),
            out_of=int(answer.get("out_of", 0)),
            search_seconds=(
                elapsed / 1000 if elapsed is not None else time.perf_counter() - started
            ),
        )

    async def close(self) -> None:
        await self._connection.close()


def _result(answer: dict[str, Any]) -> DocResult:
    if answer.get("success"):
        return DocResult(True)
    return DocResult(False, str(answer.get("error") or answer))


def _highlight(raw: dict[str, Any]) -> Highlight:
    matched: list[str] = []
    for token in raw.get("matched_tokens", []):
        # Array fields give one list per matching element.
        matched.extend(token if isinstance(token, list) else [token])
    return Highlight(
        field=str(raw.get("field", "")),
        snippet=str(raw.get("snippet", "")),
        snippets=[str(s) for s in raw.get("snippets", [])],
        matched_tokens=[str(t) for t in matched],
    )
