"""How a collection schema maps onto tantivy fields, and a document onto a tantivy document.

Each declared field becomes engine fields under prefixes, so no user name can
collide with ours:
- string fields: `t_<f>` holds the tokens (made by marquee_search.tokens and
  handed to tantivy joined by single spaces, which its whitespace tokenizer
  splits back: query and index agree by construction), each value between the
  tokens VALUE_START and VALUE_END, so an exact match (`:=`) is the phrase
  START, the value's tokens, END; and for facets `f_<f>` the value as given;
- numbers and bools: `n_<f>`, indexed and fast (filters, sorts, facets);
- `_id` (raw), `_seq` (the insertion order Typesense breaks ties by, kept
  across replacements), `_source` (the document as JSON, returned by searches).

VERSION names this mapping; collection.json records the version an index was
built with, and an index of another version is rebuilt from its stored
documents when it is opened (embedded/backend.py).
Version 1 had a `k_<f>` field per string field for `:=`, holding the
normalized value whole as one raw term: nearly one new term per value, which
cost tantivy's indexing thread ~5.5 us a document on a 3-string-field catalogue
(a third of its time); the two delimiter tokens cost next to nothing, since
every value shares them.
"""

from __future__ import annotations

import json
from typing import Any

import tantivy

from marquee_search import documents
from marquee_search.expressions import float32
from marquee_search.schema import CollectionSchema, FieldSpec, Kind
from marquee_search.tokens import normalized_value

VERSION = 2
ID = "_id"
# Registered on every index opened: it only splits on the spaces normalized_value leaves.
TOKENIZER = "marquee_tokens"
SEQ = "_seq"
SOURCE = "_source"
# Around every string value in its text field. Never a query token: tokens are
# letters and digits only (marquee_search.tokens).
VALUE_START = "\x02"
VALUE_END = "\x03"


def text_field(spec: FieldSpec) -> str:
    return f"t_{spec.name}"


def facet_field(spec: FieldSpec) -> str:
    return f"f_{spec.name}" if spec.kind.is_string else f"n_{spec.name}"


def value_field(spec: FieldSpec) -> str:
    return f"n_{spec.name}"


def tantivy_schema(schema: CollectionSchema) -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_text_field(ID, tokenizer_name="raw", index_option="basic")
    builder.add_unsigned_field(SEQ, indexed=True, fast=True)
    builder.add_bytes_field(SOURCE, stored=True)
    for spec in schema.fields:
        if not spec.index:
            continue
        scalar = spec.kind.scalar
        if scalar is Kind.STRING:
            builder.add_text_field(
                text_field(spec), tokenizer_name=TOKENIZER, index_option="position"
            )
            if spec.facet:
                builder.add_text_field(
                    facet_field(spec), tokenizer_name="raw", fast=True, index_option="basic"
                )
        elif scalar is Kind.BOOL:
            builder.add_boolean_field(value_field(spec), indexed=True, fast=True)
        elif scalar is Kind.FLOAT:
            builder.add_float_field(value_field(spec), indexed=True, fast=True)
        else:
            builder.add_integer_field(value_field(spec), indexed=True, fast=True)
    return builder.build()


def delimited(normalized: str) -> str:
    """A normalized value as its text field holds it."""
    return f"{VALUE_START} {normalized} {VALUE_END}" if normalized else f"{VALUE_START} {VALUE_END}"


def exact_phrase(normalized: str) -> list[str | tuple[int, str]]:
    """The terms a value equal to `normalized` has in a row in its text field."""
    return (
        [VALUE_START, *normalized.split(" "), VALUE_END] if normalized else [VALUE_START, VALUE_END]
    )


def register_tokenizer(index: tantivy.Index) -> None:
    analyzer = tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.whitespace()).build()
    index.register_tokenizer(TOKENIZER, analyzer)


# How each declared field is written: decided once per schema, not per document.
_STRING, _BOOL, _FLOAT, _INT, _STORED_ONLY = range(5)


class DocumentWriter:
    """Turns documents into tantivy documents, checking them against the schema on the way.

    One pass per document does what documents.Checker does (same order, same
    messages) and collects the engine's values into one dict for
    `Document.from_dict`: one call into the engine per document, not one per value.
    """

    def __init__(self, schema: CollectionSchema, tschema: tantivy.Schema) -> None:
        self._tschema = tschema
        self._plan: list[tuple[str, bool, bool, documents.Check, str, int, str, str | None]] = []
        for spec in schema.fields:
            ok, message = documents.field_rule(spec)
            scalar = spec.kind.scalar
            code = {Kind.STRING: _STRING, Kind.BOOL: _BOOL, Kind.FLOAT: _FLOAT}.get(scalar, _INT)
            main, facet = value_field(spec), None
            if not spec.index:
                code = _STORED_ONLY
            elif code == _STRING:
                main = text_field(spec)
                facet = facet_field(spec) if spec.facet else None
            self._plan.append(
                (
                    spec.name,
                    spec.optional,
                    spec.kind.is_array,
                    ok,
                    message,
                    code,
                    main,
                    facet,
                )
            )

    def document(
        self, body: dict[str, Any], seq: int, source: str | None = None, *, check: bool = False
    ) -> tantivy.Document:
        """`body` as a tantivy document; `source` is its JSON text when the caller has it.

        check=True raises documents.DocumentError unless `body` fits the schema.
        """
        if source is None:
            source = encode_source(body)
        fields: dict[str, Any] = {ID: body["id"], SEQ: seq, SOURCE: source.encode()}
        for name, optional, is_array, ok, message, code, main, facet in self._plan:
            value: Any = body.get(name)
            if value is None:
                if check and not optional:
                    raise documents.DocumentError(documents.missing_message(name))
                continue
            if check:
                if is_array:
                    if not isinstance(value, list):
                        raise documents.DocumentError(documents.not_array_message(name))
                    if not all(element is not None and ok(element) for element in value):
                        raise documents.DocumentError(message)
                elif not ok(value):
                    raise documents.DocumentError(message)
            if code == _STRING:
                fields[main] = (
                    [delimited(normalized_value(v)) for v in value]
                    if is_array
                    else delimited(normalized_value(value))
                )
                if facet is not None:
                    fields[facet] = value
            elif code == _FLOAT:
                fields[main] = (
                    [float32(float(v)) for v in value] if is_array else float32(float(value))
                )
            elif code != _STORED_ONLY:
                fields[main] = value  # bools and ints go in as they are
        return tantivy.Document.from_dict(fields, self._tschema)


def encode_source(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"))


def source(doc: tantivy.Document) -> dict[str, Any]:
    raw = doc.get_first(SOURCE)
    if raw is None:
        raise ValueError("a stored document has no source")
    result: dict[str, Any] = json.loads(bytes(raw))
    return result
