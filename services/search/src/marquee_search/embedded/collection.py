"""One collection of the embedded engine: a tantivy index, its writer, and every operation on it.

All methods are synchronous and CPU-bound; the backend runs them in worker
threads and serializes the writing ones per collection.

Durability: an Index or Delete-by-ids call is acknowledged once its record is
in the write-ahead log and fsynced (`wal.py`); the documents go to tantivy's
writer at the same time, and tantivy commits later: when the log reaches
FLUSH_BYTES or FLUSH_DOCUMENTS, when the collection has been idle (the
backend's flusher), before any read (`flush`), and on close. A commit writes
and fsyncs the new segments before it atomically replaces meta.json, and the
log is emptied after it. On open, what the log still holds is applied again
and committed. Log records hold resolved writes (the final document and its
seq, or ids to delete), so applying one again over a commit that already holds
it changes nothing: a kill between the commit and the emptying is harmless.
Delete by filter flushes first, then commits before it answers, as it needs the
committed index to evaluate the filter.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tantivy

from marquee_search import documents
from marquee_search.backend import (
    Action,
    DocResult,
    Highlight,
    SearchHit,
    SearchQuery,
    SearchResult,
)
from marquee_search.embedded import layout
from marquee_search.embedded.highlight import highlights
from marquee_search.embedded.translate import filter_query, text_query
from marquee_search.embedded.wal import WriteAheadLog
from marquee_search.expressions import TEXT_MATCH, Filter
from marquee_search.schema import CollectionSchema, FieldSpec, Kind

# Per indexing thread. Past it, tantivy's indexing thread writes its in-memory segment
# out while the Python side goes on; what is left is written by the commit a read
# waits for. 20 MB (~20k bench documents a segment) made that commit ~75 ms for 100k
# documents instead of ~270 ms with 50 MB, for the same CPU; queries over the 5
# segments measured 0-10% slower than over one (tantivy merges them from 8 on).
WRITER_HEAP_BYTES = 20_000_000
WRITER_THREADS = 1  # 2 measured no faster here: the Python side is the bound on 2 shared cores
# A commit is forced past these, so a restart replays a bounded log.
FLUSH_BYTES = 64 * 1024 * 1024
FLUSH_DOCUMENTS = 250_000
FACET_SEGMENT_SIZE = 65_000
ONE_PASS_HITS = 1024  # tantivy's bucket limit; per-segment counts stay exact below it


def _count(result: tantivy.SearchResult) -> int:
    # `count` exists at run time (count=True) but is missing from tantivy's stub.
    return int(getattr(result, "count", 0) or 0)


@dataclass
class _Existing:
    seq: int
    body: dict[str, Any] | None  # None: written but not committed, so not read back


_OK = DocResult(True)


def wal_path(index_dir: Path) -> Path:
    return index_dir.with_name(f"{index_dir.name}.wal")


def _in_order(searcher: tantivy.Searcher) -> Iterator[tuple[int, dict[str, Any]]]:
    """Every (seq, document) a searcher sees, oldest first.

    Only the addresses are held; each body is read as it is reached. It reads
    `_seq` and `_source` alone, which every layout version has.
    """
    total = searcher.num_docs
    if not total:
        return
    hits = searcher.search(
        tantivy.Query.all_query(),
        limit=total,
        order_by_field=layout.SEQ,
        order=tantivy.Order.Asc,
    ).hits
    addresses = [address for _, address in hits]
    seqs = searcher.fast_field_values(layout.SEQ, addresses)
    for seq, address in zip(seqs, addresses, strict=True):
        yield int(seq or 0), layout.source(searcher.doc(address))


class EmbeddedCollection:
    def __init__(self, index_dir: Path, schema: CollectionSchema) -> None:
        self.schema = schema
        self.index_dir = index_dir
        index_dir.mkdir(parents=True, exist_ok=True)
        self._tschema = layout.tantivy_schema(schema)
        self._index = tantivy.Index(self._tschema, path=str(index_dir), reuse=True)
        layout.register_tokenizer(self._index)
        self._documents = layout.DocumentWriter(schema)
        self._writer: tantivy.IndexWriter | None = self._index.writer(
            WRITER_HEAP_BYTES * WRITER_THREADS, WRITER_THREADS
        )
        # Written since the last commit: id -> seq, or None when deleted.
        self._pending: dict[str, int | None] = {}
        self.last_write = 0.0  # time.monotonic() of the last acknowledged write
        self._wal = WriteAheadLog(wal_path(index_dir))
        self._log_thread = concurrent.futures.ThreadPoolExecutor(1, f"search-log-{schema.name}")
        try:
            self._apply_log()
            if self._pending:
                self._commit()
            self._wal.reset()
            self._pending.clear()
        except BaseException:
            self.close(flush=False)
            raise
        self._index.reload()
        self._next_seq = self._max_seq() + 1

    # ---- reading ----------------------------------------------------------------------------

    def _max_seq(self) -> int:
        searcher = self._index.searcher()
        top = searcher.search(
            tantivy.Query.all_query(), limit=1, order_by_field=layout.SEQ, order=tantivy.Order.Desc
        ).hits
        if not top:
            return 0
        return int(searcher.fast_field_values(layout.SEQ, [top[0][1]])[0] or 0)

    def count(self) -> int:
        """Committed documents: callers flush first (the backend does, before every read)."""
        return int(self._index.searcher().num_docs)

    def _lookup_many(self, searcher: tantivy.Searcher, ids: list[str]) -> dict[str, _Existing]:
        """The committed documents among `ids`, found with one query for the whole batch."""
        unique = list(dict.fromkeys(ids))
        if not unique:
            return {}
        query = tantivy.Query.term_set_query(self._tschema, layout.ID, unique)
        hits = searcher.search(query, limit=len(unique)).hits
        if not hits:
            return {}
        addresses = [address for _, address in hits]
        seqs = searcher.fast_field_values(layout.SEQ, addresses)
        found = {}
        for seq, address in zip(seqs, addresses, strict=True):
            body = layout.source(searcher.doc(address))
            found[body["id"]] = _Existing(int(seq or 0), body)
        return found

    def _current(self, ids: list[str]) -> dict[str, _Existing]:
        """The documents among `ids` as acknowledged: committed, then the log's writes over them."""
        committed = [i for i in ids if i not in self._pending]
        found = self._lookup_many(self._index.searcher(), committed) if committed else {}
        for doc_id in ids:
            if doc_id in self._pending:
                seq = self._pending[doc_id]
                if seq is not None:
                    found[doc_id] = _Existing(seq, None)
        return found

    def documents_in_order(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """Every committed (seq, document), oldest first, from one snapshot: a rebuild's input."""
        return _in_order(self._index.searcher())

    # ---- writing ----------------------------------------------------------------------------

    @property
    def writer(self) -> tantivy.IndexWriter:
        if self._writer is None:
            raise RuntimeError(f"collection {self.schema.name!r} is closed")
        return self._writer

    @property
    def dirty(self) -> bool:
        """Acknowledged writes that a search does not see yet."""
        return bool(self._pending)

    def _commit(self) -> None:
        self.writer.commit()
        self._index.reload()

    def _apply_log(self) -> None:
        """Hand every logged write to the writer again (on open, or after a failure)."""
        self._apply_records(self._wal.records())

    def _apply_records(self, payloads: list[bytes]) -> None:
        writer = self.writer
        for payload in payloads:
            record = json.loads(payload)
            for seq, body in record.get("put", ()):
                doc_id = body["id"]
                writer.delete_documents_by_term(layout.ID, doc_id)
                writer.add_json(self._documents.document(body, seq))
                self._pending[doc_id] = seq
            for doc_id in record.get("delete", ()):
                writer.delete_documents_by_term(layout.ID, doc_id)
                self._pending[doc_id] = None

    def _restore(self, log_size: int) -> None:
        """After a failure mid-write: the writer holds exactly the acknowledged writes again.

        The log is cut back to `log_size` (this call's record, if written, was not
        acknowledged), the writer's uncommitted changes are dropped, and the log
        is applied again.
        """
        if self._wal.size != log_size:
            self._wal.truncate(log_size)
        self.writer.rollback()
        self._pending.clear()
        self._apply_log()

    def flush(self) -> None:
        """Commit what the log holds, then empty it: searches see every acknowledged write."""
        if not self._pending:
            return
        try:
            self._commit()
        except BaseException:
            self._restore(self._wal.size)
            raise
        self._wal.reset()
        self._pending.clear()

    def _maybe_flush(self) -> None:
        self.last_write = time.monotonic()
        if self._wal.size >= FLUSH_BYTES or len(self._pending) >= FLUSH_DOCUMENTS:
            self.flush()

    def add_raw(self, seq: int, body: dict[str, Any]) -> None:
        """Add a document as is (a rebuild copying from the previous index); commit after."""
        self.writer.add_json(self._documents.document(body, seq))
        self._next_seq = max(self._next_seq, seq + 1)

    def commit(self) -> None:
        """A rebuild's one commit: its writes go through no log (the old generation has them)."""
        self._commit()

    def copy_index(self, old_dir: Path) -> None:
        """Fill this (new, empty) collection from the index in `old_dir`, of any layout version.

        Its committed documents are copied, then the writes its log still holds
        (acknowledged, not committed) are applied over them, and all is committed:
        the old generation can then be dropped. The old index is only read (its
        log loses a torn last record, as on any open), so a failure here leaves
        it in use.
        """
        for seq, body in _in_order(tantivy.Index.open(str(old_dir)).searcher()):
            self.add_raw(seq, body)
        old_log = wal_path(old_dir)
        if old_log.exists():
            log = WriteAheadLog(old_log)
            try:
                self._apply_records(log.records())
            finally:
                log.close()
        self._commit()
        self._pending.clear()
        self._next_seq = self._max_seq() + 1

    def index(
        self,
        bodies: list[dict[str, Any]],
        action: Action,
        sources: list[str | None] | None = None,
    ) -> list[DocResult]:
        """One result per body; `sources[i]`, when given, is bodies[i] as JSON text."""
        ids = [body["id"] for body in bodies]
        if action in (Action.UPDATE, Action.EMPLACE) and any(
            self._pending.get(doc_id) is not None for doc_id in ids
        ):
            self.flush()  # a merge needs the stored body, read back from a commit
        current = self._current(ids)
        results: list[DocResult] = []
        # (id, seq, source, document, replaces): resolved and built before anything is written.
        writes: list[tuple[str, int, str, str, bool]] = []
        next_seq = self._next_seq
        build = self._documents.document
        for position, body in enumerate(bodies):
            doc_id = body["id"]
            existing = current.get(doc_id)
            try:
                final = self._resolve(doc_id, body, existing, action)
                seq = next_seq if existing is None else existing.seq
                source = sources[position] if sources is not None and final is body else None
                if source is None:
                    source = layout.encode_source(final)
                document = build(final, seq, source, check=True)
            except documents.DocumentError as exc:
                results.append(DocResult(False, str(exc)))
                continue
            if existing is None:
                next_seq += 1
            writes.append((doc_id, seq, source, document, existing is not None))
            current[doc_id] = _Existing(seq, final)
            results.append(_OK)
        if writes:
            # Each source is JSON already: it goes into the record as a value, not re-encoded.
            record = '{"put":[' + ",".join([f"[{w[1]},{w[2]}]" for w in writes]) + "]}"
            self._write(record, lambda writer: self._add(writer, writes))
            for doc_id, seq, _, _, _ in writes:
                self._pending[doc_id] = seq
            self._next_seq = next_seq
            self._maybe_flush()
        return results

    @staticmethod
    def _add(writer: tantivy.IndexWriter, writes: list[tuple[str, int, str, str, bool]]) -> None:
        add_json = writer.add_json
        for doc_id, _, _, document, replaces in writes:
            if replaces:
                writer.delete_documents_by_term(layout.ID, doc_id)
            add_json(document)

    def _write(self, record: str, apply: Callable[[tantivy.IndexWriter], None]) -> None:
        """Log `record` (fsynced) and apply it to the writer; all of it or none of it.

        The append runs on the log's own thread while this one applies: both wait
        in system calls or in tantivy without the GIL, so the fsync costs no time
        of its own. Nothing is committed before both are done (commits run on
        this thread), so the writer's changes never outlive a failed append.
        """
        before = self._wal.size
        logged = self._log_thread.submit(self._wal.append, record.encode())
        try:
            apply(self.writer)
        except BaseException:
            concurrent.futures.wait([logged])
            self._restore(before)
            raise
        try:
            logged.result()
        except BaseException:
            self._restore(before)
            raise

    @staticmethod
    def _resolve(
        doc_id: str, body: dict[str, Any], existing: _Existing | None, action: Action
    ) -> dict[str, Any]:
        if action is Action.CREATE:
            if existing is not None:
                raise documents.DocumentError(f"A document with id {doc_id} already exists.")
            return body
        if action is Action.UPSERT:
            return body
        if existing is None:
            if action is Action.UPDATE:
                raise documents.DocumentError(f"Could not find a document with id: {doc_id}")
            return body
        assert existing.body is not None, "flushed before a merge (index)"
        return documents.merged(existing.body, body)

    def delete_ids(self, ids: list[str]) -> int:
        present = list(self._current(ids))
        if present:

            def apply(writer: tantivy.IndexWriter) -> None:
                for doc_id in present:
                    writer.delete_documents_by_term(layout.ID, doc_id)

            self._write(json.dumps({"delete": present}), apply)
            for doc_id in present:
                self._pending[doc_id] = None
            self._maybe_flush()
        return len(present)

    def delete_filter(self, node: Filter) -> int:
        # The log holds resolved writes only; a filter is resolved by the committed
        # index, and committed at once, with nothing left in the log to replay over it.
        self.flush()
        query = filter_query(self._tschema, node)
        found = _count(self._index.searcher().search(query, limit=1, count=True))
        if found:
            self.writer.delete_documents_by_query(query)
            try:
                self._commit()
            except BaseException:
                self.writer.rollback()  # the caller is told it failed: it must not land later
                raise
        return found

    def close(self, *, flush: bool = True) -> None:
        try:
            if self._writer is not None and flush:
                self.flush()  # a failure leaves the log, which the next open applies
        finally:
            if self._writer is not None:
                self._writer.wait_merging_threads()  # also releases the writer lock
                self._writer = None
            self._log_thread.shutdown()
            self._wal.close()

    # ---- searching --------------------------------------------------------------------------

    def search(self, query: SearchQuery) -> SearchResult:
        started = time.perf_counter()
        searcher = self._index.searcher()
        out_of = int(searcher.num_docs)
        parts: list[tuple[tantivy.Occur, tantivy.Query]] = []
        if not query.wildcard:
            text = text_query(self._tschema, query.q, query.query_by)
            assert text is not None, "a query without tokens is a wildcard (validation)"
            parts.append((tantivy.Occur.Must, text))
        if query.filter is not None:
            # Scored zero so the text score stays the sum of the match kinds alone.
            constant = tantivy.Query.const_score_query(
                filter_query(self._tschema, query.filter), 0.0
            )
            parts.append((tantivy.Occur.Must, constant))
        if not parts:
            tq = tantivy.Query.all_query()
        elif len(parts) == 1 and query.wildcard:
            tq = parts[0][1]
        else:
            tq = tantivy.Query.boolean_query(parts)
        offset = (query.page - 1) * query.per_page
        page = self._ranked(searcher, tq, query, offset)
        found, hits = page
        result_hits = []
        for score, address in hits:
            body = layout.source(searcher.doc(address))
            marks: list[Highlight] = (
                [] if query.wildcard else highlights(query.q, query.query_by, body)
            )
            result_hits.append(
                SearchHit(_project(body, query), marks, 0 if query.wildcard else int(score))
            )
        facets = self._facets(searcher, tq, query) if query.facets else []
        return SearchResult(result_hits, facets, found, out_of, time.perf_counter() - started)

    def _sort_clauses(self, query: SearchQuery) -> list[tuple[str, bool]]:
        if query.sort:
            return [(c.field, c.descending) for c in query.sort]
        clauses = [] if query.wildcard else [(TEXT_MATCH, True)]
        if self.schema.default_sorting_field:
            clauses.append((self.schema.default_sorting_field, True))
        return clauses

    def _ranked(
        self, searcher: tantivy.Searcher, tq: tantivy.Query, query: SearchQuery, offset: int
    ) -> tuple[int, list[tuple[float, tantivy.DocAddress]]]:
        clauses = self._sort_clauses(query)
        if not clauses:
            # Typesense's own order when nothing else decides: newest first.
            result = searcher.search(
                tq,
                limit=query.per_page,
                offset=offset,
                order_by_field=layout.SEQ,
                order=tantivy.Order.Desc,
            )
            return _count(result), [(0.0, a) for _, a in result.hits]
        # Ties are broken on every hit, so all of them are fetched: in one pass when
        # they are few (the usual case), else in a second one sized by the count.
        first = searcher.search(tq, limit=max(offset + query.per_page, ONE_PASS_HITS), count=True)
        found = _count(first)
        if not found or offset >= found:
            return found, []
        hits = first.hits if len(first.hits) >= found else searcher.search(tq, limit=found).hits
        addresses = [address for _, address in hits]
        columns: list[list[float]] = []
        for name, descending in [*clauses, (layout.SEQ, True)]:
            if name == TEXT_MATCH:
                values = [float(score) for score, _ in hits]
            else:
                field = (
                    layout.SEQ
                    if name == layout.SEQ
                    else layout.value_field(self.schema.by_name[name])
                )
                raw = searcher.fast_field_values(field, addresses)
                # A missing value sorts as the smallest (Typesense stores INT64_MIN).
                values = [float("-inf") if v is None else float(v) for v in raw]
            columns.append([-v for v in values] if descending else values)
        order = sorted(range(len(hits)), key=lambda i: tuple(column[i] for column in columns))
        chosen = order[offset : offset + query.per_page]
        return found, [(hits[i][0], addresses[i]) for i in chosen]

    def _facets(
        self, searcher: tantivy.Searcher, tq: tantivy.Query, query: SearchQuery
    ) -> list[tuple[str, list[tuple[str, int]]]]:
        aggregations = {
            str(i): {
                "terms": {
                    "field": layout.facet_field(spec),
                    "size": query.max_facet_values,
                    "segment_size": FACET_SEGMENT_SIZE,
                }
            }
            for i, spec in enumerate(query.facets)
        }
        answer = searcher.aggregate(tq, aggregations)
        result = []
        for i, spec in enumerate(query.facets):
            buckets = answer.get(str(i), {}).get("buckets", [])
            counts = [(_facet_value(spec, b), int(b["doc_count"])) for b in buckets]
            counts.sort(key=lambda pair: (-pair[1], pair[0]))
            result.append((spec.name, counts[: query.max_facet_values]))
        return result


def _facet_value(spec: FieldSpec, bucket: dict[str, Any]) -> str:
    if spec.kind.scalar is Kind.BOOL:
        return str(bucket.get("key_as_string") or ("true" if bucket["key"] else "false"))
    if spec.kind.is_string:
        return str(bucket["key"])
    return str(int(bucket["key"]))


def _project(body: dict[str, Any], query: SearchQuery) -> dict[str, Any]:
    if query.include_fields:
        keep = set(query.include_fields)
        body = {k: v for k, v in body.items() if k in keep}
    if query.exclude_fields:
        drop = set(query.exclude_fields)
        body = {k: v for k, v in body.items() if k not in drop}
    return body
