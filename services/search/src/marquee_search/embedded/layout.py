"""How a collection schema maps onto tantivy fields, and a document onto a tantivy document.

Each declared field becomes engine fields under prefixes, so no user name can
collide with ours:
- string fields: `t_<f>` holds the tokens (made by marquee_search.tokens and
  handed to tantivy joined by single spaces, which its whitespace tokenizer
  splits back: query and index agree by construction), each value between the
  tokens VALUE_START and VALUE_END, so an exact match (`:=`) is the phrase
  START, the value's tokens, END; and for facets `f_<f>` the value as given;
- numbers and bools: `n_<f>`, indexed and fast (filters, sorts, facets); a float
  as the integer `float_key`;
- `_id` (raw), `_seq` (the insertion order Typesense breaks ties by, kept
  across replacements), `_source` (the document as JSON, returned by searches).

VERSION names this mapping; collection.json records the version an index was
built with, and an index of another version is rebuilt from its stored
documents when it is opened (embedded/backend.py). Version 1 had a `k_<f>`
field per string field for `:=`, holding the normalized value whole as one raw
term: nearly one new term per value, which cost tantivy's indexing thread ~5.5
us a document on a 3-string-field catalogue (a third of its time), where the
delimiter tokens every value shares cost next to nothing. Version 2 kept
`_source` as bytes and floats as f64; version 3 holds `_source` as stored text
and floats as `float_key`, so that a document goes in as one JSON text.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from typing import Any

import tantivy

from marquee_search import documents
from marquee_search.schema import CollectionSchema, FieldSpec, Kind
from marquee_search.tokens import ASCII_DROPPED, normalized_value

VERSION = 3
ID = "_id"
# Registered on every index opened: it only splits on the spaces normalized_value leaves.
TOKENIZER = "marquee_tokens"
UNINDEXED = "marquee_none"
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
    # Stored text, so add_json takes it as a JSON string (a bytes field wants base64);
    # its tokenizer makes no token: it is only read back.
    builder.add_text_field(SOURCE, stored=True, tokenizer_name=UNINDEXED, index_option="basic")
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
            builder.add_integer_field(value_field(spec), indexed=True, fast=True)  # float_key
        else:
            builder.add_integer_field(value_field(spec), indexed=True, fast=True)
    return builder.build()


def exact_phrase(normalized: str) -> list[str | tuple[int, str]]:
    """The terms a value equal to `normalized` has in a row in its text field."""
    return (
        [VALUE_START, *normalized.split(" "), VALUE_END] if normalized else [VALUE_START, VALUE_END]
    )


def register_tokenizer(index: tantivy.Index) -> None:
    analyzer = tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.whitespace()).build()
    index.register_tokenizer(TOKENIZER, analyzer)
    # The whole text as one token, then dropped (shorter than 0 bytes is none).
    nothing = tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.raw()).filter(
        tantivy.Filter.remove_long(0)
    )
    index.register_tokenizer(UNINDEXED, nothing.build())


# How each declared field is written: decided once per schema, not per document.
_STRING, _BOOL, _FLOAT, _INT, _STORED_ONLY = range(5)
_encode_string = json.encoder.encode_basestring  # a str as a JSON string (C), non-ASCII kept
# A text field's value in JSON: the delimiters escaped, the tokens as they are (letters
# and digits, which JSON never escapes).
_JSON_START = _encode_string(f"{VALUE_START} ")[:-1]
_JSON_END = _encode_string(f" {VALUE_END}")[1:]
_JSON_EMPTY = _encode_string(f"{VALUE_START} {VALUE_END}")
_FLOAT32 = struct.Struct("<f")
_INT32 = struct.Struct("<i")


def float_key(value: float) -> int:
    """A float as Typesense compares it (rounded to float32), as an integer in the same order.

    Float fields are integer fields holding this key: tantivy's JSON parser
    (serde_json without exact float parsing) can read a decimal float32 value
    one unit in the last place off, and filters compare at float32 precision.
    The key is the float32's magnitude bits, negated for negative numbers: the
    order is kept, and -0.0 and 0.0 are one key, as they compare equal.
    """
    try:
        bits: int = _INT32.unpack(_FLOAT32.pack(value))[0]
    except OverflowError:  # beyond float32's range: stored as infinity, like Typesense
        bits = _INT32.unpack(_FLOAT32.pack(math.copysign(math.inf, value)))[0]
    return bits if bits >= 0 else -(bits & 0x7FFFFFFF)


def _json_float(value: float) -> str:
    return str(float_key(float(value)))


def _json_text(value: str) -> str:
    if value.isascii():
        # tokens() without splitting and joining: with letters, digits and spaces
        # left, tantivy's whitespace tokenizer cuts it where str.split() does
        # (other ASCII whitespace, which the two do not agree on, takes the long way).
        kept = ASCII_DROPPED.sub("", value).lower()
        if kept.isprintable():
            return f"{_JSON_START}{kept}{_JSON_END}"
    normalized = normalized_value(value)
    return f"{_JSON_START}{normalized}{_JSON_END}" if normalized else _JSON_EMPTY


class DocumentWriter:
    """Turns documents into tantivy documents, checking them against the schema on the way.

    One pass per document does what documents.Checker does (same order, same
    messages) and writes the engine's fields as one JSON object, which
    `IndexWriter.add_json` parses and adds in one call without the GIL.
    Measured on the bench catalogue, that costs ~2 us a document less than
    collecting them into a dict for `Document.from_dict` (which converts each
    value with the GIL held) and `add_document` (which copies it again).

    Checked documents (every Index call) go through a function generated for
    the schema (`_compile`): straight-line code with the type checks inline and
    one f-string, ~1.2 of ~6 us a bench document less than the loop over the
    plan (`_loop`), which stays for unchecked documents (replays, rebuilds) and
    as the reference the tests compare the generated one with.
    """

    def __init__(self, schema: CollectionSchema) -> None:
        # Per field: name, optional, array, check, message, how it is written, and
        # the JSON text that introduces its engine field (and its facet field).
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
                    f',"{main}":',
                    None if facet is None else f',"{facet}":',
                )
            )
        self._checked = _compile(self._plan)

    def document(
        self, body: dict[str, Any], seq: int, source: str | None = None, *, check: bool = False
    ) -> str:
        """`body` as the JSON text of a tantivy document, for `IndexWriter.add_json`.

        `source` is its JSON text when the caller has it. check=True raises
        documents.DocumentError unless `body` fits the schema.
        """
        if source is None:
            source = encode_source(body)
        if check:
            return self._checked(body, seq, source)
        return self._loop(body, seq, source, check=False)

    def _loop(self, body: dict[str, Any], seq: int, source: str, *, check: bool) -> str:
        parts = [
            f'{{"{ID}":{_encode_string(body["id"])},"{SEQ}":{seq},"{SOURCE}":{_encode_string(source)}'
        ]
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
                if is_array:
                    parts += (main, "[", ",".join([_json_text(v) for v in value]), "]")
                    if facet is not None:
                        parts += (facet, "[", ",".join([_encode_string(v) for v in value]), "]")
                else:
                    parts += (main, _json_text(value))
                    if facet is not None:
                        parts += (facet, _encode_string(value))
            elif code == _FLOAT:
                if is_array:
                    parts += (main, "[", ",".join([_json_float(v) for v in value]), "]")
                else:
                    parts += (main, _json_float(value))
            elif code == _INT:
                parts += (main, f"[{','.join(map(str, value))}]" if is_array else str(value))
            elif code == _BOOL:
                if is_array:
                    parts += (main, "[", ",".join(["true" if v else "false" for v in value]), "]")
                else:
                    parts += (main, "true" if value else "false")
        parts.append("}")
        return "".join(parts)


# Type checks written inline by _compile: the same tests as documents._is_string and
# _is_bool; numbers keep calling their documents check (ranges, finiteness).
_INLINE_CHECKS = {_STRING: "isinstance(v, str)", _BOOL: "isinstance(v, bool)"}
# Each value's JSON text, as _loop writes it.
_VALUE = {_STRING: "_text(v)", _FLOAT: "_float(v)", _INT: "v", _BOOL: '"true" if v else "false"'}
_ELEMENT = {
    _STRING: "_text(e)",
    _FLOAT: "_float(e)",
    _INT: "str(e)",
    _BOOL: "('true' if e else 'false')",
}


def _compile(
    plan: list[tuple[str, bool, bool, documents.Check, str, int, str, str | None]],
) -> Callable[[dict[str, Any], int, str], str]:
    """DocumentWriter._loop(check=True) for one plan, as straight-line Python.

    The generated source holds only names and text of our own making: field
    names, messages and checks are bound by name in its namespace.
    """
    namespace: dict[str, Any] = {
        "DocumentError": documents.DocumentError,
        "_enc": _encode_string,
        "_text": _json_text,
        "_float": _json_float,
    }
    lines = ["def document(body, seq, source):", "    get = body.get"]
    outputs = []
    for i, (name, optional, is_array, ok, message, code, main, facet) in enumerate(plan):
        namespace.update(
            {
                f"NAME{i}": name,
                f"OK{i}": ok,
                f"BAD{i}": message,
                f"MISSING{i}": documents.missing_message(name),
                f"NOT_ARRAY{i}": documents.not_array_message(name),
                f"MAIN{i}": main,
                f"FACET{i}": facet,
            }
        )
        lines.append(f"    v = get(NAME{i})")
        if optional:
            lines += [f"    o{i} = ''", "    if v is not None:"]
            pad = " " * 8
        else:
            lines.append(f"    if v is None: raise DocumentError(MISSING{i})")
            pad = " " * 4
        if is_array:
            lines += [
                f"{pad}if not isinstance(v, list): raise DocumentError(NOT_ARRAY{i})",
                f"{pad}if not all(e is not None and OK{i}(e) for e in v):",
                f"{pad}    raise DocumentError(BAD{i})",
            ]
            text = "''"
            if code in _ELEMENT:
                text = f"MAIN{i} + '[' + ','.join([{_ELEMENT[code]} for e in v]) + ']'"
                if facet is not None:
                    text += f" + FACET{i} + '[' + ','.join([_enc(e) for e in v]) + ']'"
        else:
            check = _INLINE_CHECKS.get(code, f"OK{i}(v)")
            lines.append(f"{pad}if not {check}: raise DocumentError(BAD{i})")
            text = "''"
            if code in _VALUE:
                text = f"f'{{MAIN{i}}}{{{_VALUE[code]}}}'"
                if facet is not None:
                    text = f"f'{{MAIN{i}}}{{_text(v)}}{{FACET{i}}}{{_enc(v)}}'"
        lines.append(f"{pad}o{i} = {text}")
        outputs.append(f"{{o{i}}}")
    head = f'{{{{"{ID}":{{_enc(body["id"])}},"{SEQ}":{{seq}},"{SOURCE}":{{_enc(source)}}'
    lines.append(f"    return f'{head}{''.join(outputs)}}}}}'")
    # Safe to run: the source is made of indices and this module's constants only;
    # every name, message and check from the schema is bound in `namespace`.
    exec("\n".join(lines), namespace)  # noqa: S102  # nosec B102
    function: Callable[[dict[str, Any], int, str], str] = namespace["document"]
    return function


def encode_source(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"))


def source(doc: tantivy.Document) -> dict[str, Any]:
    raw = doc.get_first(SOURCE)
    if raw is None:
        raise ValueError("a stored document has no source")
    # Text since layout 3; bytes before (read when an older index is rebuilt).
    result: dict[str, Any] = json.loads(raw if isinstance(raw, str) else bytes(raw))
    return result
