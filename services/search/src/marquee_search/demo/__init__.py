"""The demo catalogue `make run` serves: invented films and series in the `films` collection.

`films.jsonl` is written by `generate.py` (deterministic); `schema.json` is its
schema in the form `marquee search create --schema` reads (Typesense type
names). Loaded at start when MARQUEE_SEARCH_DEMO_CATALOGUE is on and the
collection is absent, so a restart keeps whatever was changed since.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from google.protobuf import json_format

from marquee.search.v1 import search_pb2 as pb
from marquee_search import documents
from marquee_search.backend import Action, CollectionNotFound, SearchBackend
from marquee_search.schema import schema_from_request

COLLECTION = "films"
BATCH = 1000


def field_type(name: str) -> str:
    """A Typesense type name (`string`, `int32[]`) as the proto enum's name; others unchanged."""
    if name.startswith("FIELD_TYPE_"):
        return name
    return "FIELD_TYPE_" + name.upper().replace("[]", "_ARRAY")


def schema_request(name: str, declared: dict[str, Any]) -> pb.EnsureCollectionRequest:
    """An EnsureCollectionRequest from a schema file's object (fields, default_sorting_field)."""
    body = dict(declared)
    body["name"] = name
    body["fields"] = [dict(f, type=field_type(str(f.get("type", "")))) for f in body["fields"]]
    return json_format.ParseDict(body, pb.EnsureCollectionRequest())


def _text(file: str) -> str:
    return (resources.files(__package__) / file).read_text(encoding="utf-8")


async def load_if_absent(backend: SearchBackend, log: Any) -> bool:
    """Create and fill the demo collection unless it exists; True if this call loaded it."""
    try:
        await backend.get_collection(COLLECTION)
        return False
    except CollectionNotFound:
        pass
    schema, violations = schema_from_request(
        schema_request(COLLECTION, json.loads(_text("schema.json")))
    )
    if violations:
        raise ValueError(f"the demo schema is invalid: {violations}")
    await backend.ensure_collection(schema)
    lines = [line for line in _text("films.jsonl").splitlines() if line.strip()]
    failed = 0
    for start in range(0, len(lines), BATCH):
        decoded = [
            documents.decode(pb.Document(json=line), generate_id=True)
            for line in lines[start : start + BATCH]
        ]
        bodies = [d.body for d in decoded if d.body is not None]
        results = await backend.index(COLLECTION, bodies, Action.UPSERT)
        failed += sum(1 for r in results if not r.ok) + len(decoded) - len(bodies)
    if failed:
        raise ValueError(f"{failed} documents of the demo catalogue did not index")
    log.info("demo catalogue loaded", collection=COLLECTION, documents=len(lines))
    return True
