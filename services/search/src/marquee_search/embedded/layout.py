"""How a collection schema maps onto tantivy fields, and a document onto a tantivy document.

Each declared field becomes engine fields under prefixes, so no user name can
collide with ours:
- string fields: `t_<f>` holds the tokens (made by marquee_search.tokens and
  handed to tantivy joined by single spaces, which its whitespace tokenizer
  splits back: query and index agree by construction), `k_<f>` the same
  normalized value whole (raw, for `:=`), and for facets `f_<f>` the value as
  given;
- numbers and bools: `n_<f>`, indexed and fast (filters, sorts, facets);
- `_id` (raw), `_seq` (the insertion order Typesense breaks ties by, kept
  across replacements), `_source` (the document as JSON, returned by searches).
"""

from __future__ import annotations

import json
from typing import Any

import tantivy

from marquee_search import documents
from marquee_search.expressions import float32
from marquee_search.schema import CollectionSchema, FieldSpec, Kind
from marquee_search.tokens import normalized_value

ID = "_id"
# Registered on every index opened: it only splits on the spaces normalized_value leaves.
TOKENIZER = "marquee_tokens"
SEQ = "_seq"
SOURCE = "_source"


def text_field(spec: FieldSpec) -> str:
    return f"t_{spec.name}"


def exact_field(spec: FieldSpec) -> str:
    return f"k_{spec.name}"


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
            builder.add_text_field(exact_field(spec), tokenizer_name="raw", index_option="basic")
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
        self._plan: list[
            tuple[str, bool, bool, documents.Check, str, int, str, str, str | None]
        ] = []
        for spec in schema.fields:
            ok, message = documents.field_rule(spec)
            scalar = spec.kind.scalar
            code = {Kind.STRING: _STRING, Kind.BOOL: _BOOL, Kind.FLOAT: _FLOAT}.get(scalar, _INT)
            main, exact, facet = value_field(spec), "", None
            if not spec.index:
                code = _STORED_ONLY
            elif code == _STRING:
                main, exact = text_field(spec), exact_field(spec)
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
                    exact,
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
        for name, optional, is_array, ok, message, code, main, exact, facet in self._plan:
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
                normalized: Any = (
                    [normalized_value(v) for v in value] if is_array else normalized_value(value)
                )
                fields[main] = normalized
                fields[exact] = normalized
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
