"""The embedded backend: collections on disk under the data dir, served from worker threads.

Layout: `<data dir>/collections/<name>/collection.json` holds the schema, the
generation of the index in use and the field layout version it was built with
(`layout.VERSION`; absent means 1), `index-<generation>/` holds that tantivy index.
An index of another layout version is rebuilt into the next generation when it
is opened, the same way.
A compatible schema change builds the next generation from the stored
documents, then switches collection.json to it atomically (write, fsync,
rename), so a kill at any point leaves one complete generation in use; leftover
ones are removed when the collection is opened again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from marquee_search import documents
from marquee_search.backend import (
    Action,
    CollectionInfo,
    CollectionNotFound,
    DocResult,
    ReindexProgress,
    ReindexStopped,
    SchemaConflict,
    SearchQuery,
    SearchResult,
)
from marquee_search.embedded import layout
from marquee_search.embedded.collection import EmbeddedCollection, wal_path
from marquee_search.expressions import Filter
from marquee_search.schema import CollectionSchema, added_fields, compatibility_problems

log = logging.getLogger(__name__)

META = "collection.json"
# A collection with acknowledged but uncommitted writes is committed after this
# long without another write (reads commit at once): the log stays short.
FLUSH_IDLE_SECONDS = 1.0


def _write_atomically(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(f".tmp-{uuid.uuid4().hex}")
    with tmp.open("w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _meta(schema: CollectionSchema, generation: int) -> dict[str, Any]:
    return {"schema": schema.to_json(), "generation": generation, "layout": layout.VERSION}


class _Entry:
    def __init__(self, directory: Path, collection: EmbeddedCollection, generation: int) -> None:
        self.directory = directory
        self.collection = collection
        self.generation = generation
        self.lock = asyncio.Lock()  # writes and schema changes of this collection, one at a time


class EmbeddedBackend:
    def __init__(self, data_dir: Path) -> None:
        self._root = Path(data_dir) / "collections"
        self._entries: dict[str, _Entry] = {}
        self._catalog_lock = asyncio.Lock()  # creating and dropping collections
        self._flusher: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, data_dir: Path) -> EmbeddedBackend:
        backend = cls(data_dir)
        await asyncio.to_thread(backend._load_all)
        backend._flusher = asyncio.create_task(backend._flush_idle())
        return backend

    async def _flush_idle(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_IDLE_SECONDS / 2)
            now = time.monotonic()
            for entry in list(self._entries.values()):
                collection = entry.collection
                if collection.dirty and now - collection.last_write >= FLUSH_IDLE_SECONDS:
                    try:
                        await self._fresh(entry)
                    except Exception:
                        # The log still holds the writes; the next read or flush retries.
                        log.exception("committing collection %r failed", collection.schema.name)

    async def _fresh(self, entry: _Entry) -> None:
        """Commit the acknowledged writes a read would otherwise miss."""
        if not entry.collection.dirty:
            return
        async with entry.lock:
            await asyncio.to_thread(entry.collection.flush)

    def _load_all(self) -> None:
        self._root.mkdir(parents=True, exist_ok=True)
        for directory in sorted(self._root.iterdir()):
            meta_path = directory / META
            if directory.name.startswith(".") or not meta_path.exists():
                shutil.rmtree(directory, ignore_errors=True)  # a create or drop cut short
                continue
            meta = json.loads(meta_path.read_text())
            schema = CollectionSchema.from_json(meta["schema"])
            generation = int(meta["generation"])
            for stale in directory.glob("index-*"):
                if stale.name == f"index-{generation}.wal":
                    continue
                if stale.name != f"index-{generation}":
                    if stale.is_dir():
                        shutil.rmtree(stale, ignore_errors=True)
                    else:
                        stale.unlink(missing_ok=True)
            for tmp in directory.glob("*.tmp-*"):
                tmp.unlink(missing_ok=True)
            if int(meta.get("layout", 1)) != layout.VERSION:
                self._entries[schema.name] = self._upgrade(directory, schema, generation)
                continue
            collection = EmbeddedCollection(directory / f"index-{generation}", schema)
            self._entries[schema.name] = _Entry(directory, collection, generation)

    @staticmethod
    def _upgrade(directory: Path, schema: CollectionSchema, generation: int) -> _Entry:
        """The index of an earlier layout, rebuilt as the next generation and switched to."""
        old = directory / f"index-{generation}"
        target = directory / f"index-{generation + 1}"
        started = time.monotonic()
        fresh = EmbeddedCollection(target, schema)
        try:
            fresh.copy_index(old)
        except BaseException:
            fresh.close(flush=False)
            shutil.rmtree(target, ignore_errors=True)
            wal_path(target).unlink(missing_ok=True)
            raise
        _write_atomically(directory / META, _meta(schema, generation + 1))
        shutil.rmtree(old, ignore_errors=True)
        wal_path(old).unlink(missing_ok=True)
        log.info(
            "collection %r rebuilt for field layout %d: %d documents in %.1f s",
            schema.name,
            layout.VERSION,
            fresh.count(),
            time.monotonic() - started,
        )
        return _Entry(directory, fresh, generation + 1)

    def _entry(self, name: str) -> _Entry:
        entry = self._entries.get(name)
        if entry is None:
            raise CollectionNotFound(name)
        return entry

    @staticmethod
    def _info(entry: _Entry) -> CollectionInfo:
        return CollectionInfo(entry.collection.schema, entry.collection.count())

    async def ensure_collection(self, schema: CollectionSchema) -> tuple[CollectionInfo, bool]:
        async with self._catalog_lock:
            entry = self._entries.get(schema.name)
            if entry is None:
                entry = await asyncio.to_thread(self._create, schema)
                self._entries[schema.name] = entry
                return self._info(entry), True
        async with entry.lock:
            if self._entries.get(schema.name) is not entry:  # dropped while we waited
                return await self.ensure_collection(schema)
            existing = entry.collection.schema
            problems = compatibility_problems(existing, schema)
            if problems:
                raise SchemaConflict("; ".join(problems))
            await asyncio.to_thread(entry.collection.flush)  # the count is of every document
            new_fields = added_fields(existing, schema)
            if new_fields:
                wanted = CollectionSchema(
                    existing.name,
                    existing.fields + tuple(new_fields),
                    existing.default_sorting_field,
                )
                await asyncio.to_thread(self._rebuild, entry, wanted)
            return self._info(entry), False

    def _create(self, schema: CollectionSchema) -> _Entry:
        directory = self._root / schema.name
        shutil.rmtree(directory, ignore_errors=True)
        # Built aside, then renamed: a crash leaves no half-made collection behind.
        building = self._root / f".new-{schema.name}-{uuid.uuid4().hex}"
        building.mkdir(parents=True)
        collection = EmbeddedCollection(building / "index-1", schema)
        collection.close()
        _write_atomically(building / META, _meta(schema, 1))
        os.replace(building, directory)
        return _Entry(directory, EmbeddedCollection(directory / "index-1", schema), 1)

    def _rebuild(
        self, entry: _Entry, wanted: CollectionSchema, progress: ReindexProgress | None = None
    ) -> None:
        # The copy reads the committed index: everything acknowledged must be in it.
        entry.collection.flush()
        generation = entry.generation + 1
        target = entry.directory / f"index-{generation}"
        shutil.rmtree(target, ignore_errors=True)
        wal_path(target).unlink(missing_ok=True)
        fresh = EmbeddedCollection(target, wanted)
        checker = documents.Checker(wanted)
        if progress is not None:
            progress.total = entry.collection.count()
        try:
            for seq, body in entry.collection.documents_in_order():
                if progress is not None and progress.stop:
                    raise ReindexStopped(f"reindex of {wanted.name!r} stopped")
                try:
                    checker.check(body)
                except documents.DocumentError as exc:
                    raise SchemaConflict(
                        f"document {body.get('id')!r} does not fit the new schema: {exc}"
                    ) from exc
                fresh.add_raw(seq, body)
                if progress is not None:
                    progress.done += 1
            fresh.commit()
        except BaseException:
            fresh.close(flush=False)
            shutil.rmtree(target, ignore_errors=True)
            raise
        _write_atomically(entry.directory / META, _meta(wanted, generation))
        old = entry.collection
        entry.collection, entry.generation = fresh, generation
        old.close()
        shutil.rmtree(old.index_dir, ignore_errors=True)
        wal_path(old.index_dir).unlink(missing_ok=True)

    async def get_collection(self, name: str) -> CollectionInfo:
        entry = self._entry(name)
        await self._fresh(entry)
        return self._info(entry)

    async def schema(self, name: str) -> CollectionSchema:
        return self._entry(name).collection.schema

    async def delete_collection(self, name: str) -> bool:
        async with self._catalog_lock:
            entry = self._entries.get(name)
            if entry is None:
                return False
            async with entry.lock:
                del self._entries[name]
                await asyncio.to_thread(self._drop, entry)
        return True

    def _drop(self, entry: _Entry) -> None:
        entry.collection.close(flush=False)  # its writes go with it
        # Renamed first: after a crash mid-delete the collection is gone, not half there.
        trash = self._root / f".drop-{uuid.uuid4().hex}"
        os.replace(entry.directory, trash)
        shutil.rmtree(trash, ignore_errors=True)

    @contextlib.asynccontextmanager
    async def _writing(self, name: str) -> AsyncIterator[EmbeddedCollection]:
        """The collection, locked for writing; NOT_FOUND if it was dropped while we waited."""
        entry = self._entry(name)
        async with entry.lock:
            if self._entries.get(name) is not entry:
                raise CollectionNotFound(name)
            yield entry.collection

    async def index(
        self,
        name: str,
        bodies: list[dict[str, Any]],
        action: Action,
        sources: list[str | None] | None = None,
    ) -> list[DocResult]:
        async with self._writing(name) as collection:
            return await asyncio.to_thread(collection.index, bodies, action, sources)

    async def delete_ids(self, name: str, ids: list[str]) -> int:
        async with self._writing(name) as collection:
            return await asyncio.to_thread(collection.delete_ids, ids)

    async def delete_filter(self, name: str, filter_: Filter, filter_text: str) -> int:
        async with self._writing(name) as collection:
            return await asyncio.to_thread(collection.delete_filter, filter_)

    async def search(self, name: str, query: SearchQuery) -> SearchResult:
        # Reads see every acknowledged write, as with Typesense: commit first if needed.
        entry = self._entry(name)
        await self._fresh(entry)
        return await asyncio.to_thread(entry.collection.search, query)

    async def reindex(self, name: str, progress: ReindexProgress) -> None:
        # The same path as a compatible schema change: the next generation is built
        # from the stored documents and switched to atomically. Searches read the
        # current generation meanwhile; writes wait for the lock, so none is lost
        # between the copy and the switch.
        entry = self._entry(name)
        async with entry.lock:
            if self._entries.get(name) is not entry:
                raise CollectionNotFound(name)
            work = asyncio.ensure_future(
                asyncio.to_thread(self._rebuild, entry, entry.collection.schema, progress)
            )
            try:
                await asyncio.shield(work)
            except asyncio.CancelledError:
                # The thread cannot be cancelled: ask it to stop and keep the lock
                # until it has, or a write could land in the index being replaced.
                progress.stop = True
                await asyncio.wait([work])
                raise

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        for entry in list(self._entries.values()):
            async with entry.lock:
                await asyncio.to_thread(entry.collection.close)
        self._entries.clear()
