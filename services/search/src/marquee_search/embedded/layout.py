"""How a collection schema maps onto tantivy fields, and a document onto a tantivy document.

Each declared field becomes engine fields under prefixes, so no user name can
collide with ours:
- string fields: `t_<f>` holds the tokens (made by marquee_search.tokens, handed
  to tantivy pre-tokenized so query and index agree), `k_<f>` the normalized
  whole value (raw, for `:=`), and for facets `f_<f>` the value as given;
- numbers and bools: `n_<f>`, indexed and fast (filters, sorts, facets);
- `_id` (raw), `_seq` (the insertion order Typesense breaks ties by, kept
  across replacements), `_source` (the document as JSON, returned by searches).
"""

from __future__ import annotations

import json
from typing import Any

import tantivy

from marquee_search.expressions import float32
from marquee_search.schema import CollectionSchema, FieldSpec, Kind
from marquee_search.tokens import normalized_value, tokens

ID = "_id"
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
            builder.add_text_field(text_field(spec), index_option="position")
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


def _pretokenized(text: str) -> tantivy.PreTokenizedString:
    words = tokens(text)
    return tantivy.PreTokenizedString(
        text, [tantivy.Token(word, position, 0, 0) for position, word in enumerate(words)]
    )


def to_tantivy(schema: CollectionSchema, body: dict[str, Any], seq: int) -> tantivy.Document:
    """The engine document of a checked body (documents.check has accepted it)."""
    doc = tantivy.Document()
    doc.add_text(ID, body["id"])
    doc.add_unsigned(SEQ, seq)
    doc.add_bytes(SOURCE, json.dumps(body, separators=(",", ":")).encode())
    for spec in schema.fields:
        value = body.get(spec.name)
        if value is None or not spec.index:
            continue
        values = value if spec.kind.is_array else [value]
        scalar = spec.kind.scalar
        for v in values:
            if scalar is Kind.STRING:
                doc.add_pre_tokenized_text(text_field(spec), _pretokenized(v))
                doc.add_text(exact_field(spec), normalized_value(v))
                if spec.facet:
                    doc.add_text(facet_field(spec), v)
            elif scalar is Kind.BOOL:
                doc.add_boolean(value_field(spec), v)
            elif scalar is Kind.FLOAT:
                doc.add_float(value_field(spec), float32(float(v)))
            else:
                doc.add_integer(value_field(spec), int(v))
    return doc


def source(doc: tantivy.Document) -> dict[str, Any]:
    raw = doc.get_first(SOURCE)
    if raw is None:
        raise ValueError("a stored document has no source")
    result: dict[str, Any] = json.loads(bytes(raw))
    return result
