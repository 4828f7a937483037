"""Documents of an IndexRequest: decoding, ids, and the per-document schema check.

Decoding and ids are the service's, so both backends see the same input: a
Struct's numbers are all doubles, so whole ones become ints (a JSON body keeps
its own types); a missing id is generated for CREATE and UPSERT. The schema
check is what Typesense does with `dirty_values=reject`, which the Typesense
backend asks for: the embedded engine runs it itself, and a failing document
fails alone.
"""

from __future__ import annotations

import json
import json.scanner
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pydantic_core
from google.protobuf import json_format

from marquee.search.v1 import search_pb2 as pb
from marquee_search.schema import CollectionSchema, FieldSpec, Kind

MAX_ID_BYTES = 512


class DocumentError(ValueError):
    """Why one document cannot be indexed; the message goes into its IndexResult."""


@dataclass(slots=True)
class Decoded:
    """One request document: its body, or why it could not be read."""

    id: str
    body: dict[str, Any] | None
    error: str = ""
    # The request's JSON text when it is exactly `body` (a `json` body with its id):
    # the embedded engine stores and logs it as is instead of encoding it again.
    source: str | None = None


def _whole_numbers_as_ints(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, list):
        return [_whole_numbers_as_ints(v) for v in value]
    if isinstance(value, dict):
        return {k: _whole_numbers_as_ints(v) for k, v in value.items()}
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# One decoder for all documents (json.loads with options builds one per call); its
# scanner is called directly, as JSONDecoder.decode does, minus two Python calls a document.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
# typeshed types make_scanner's argument as the scanner class itself; it takes the decoder.
_SCAN: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(_DECODER)  # type: ignore[arg-type]
_SPACE_CHARS = " \t\n\r"  # JSON's whitespace, as json.decoder skips it
_SPACE = re.compile(f"[{_SPACE_CHARS}]*")


def _skip_space(text: str, position: int) -> int:
    found = _SPACE.match(text, position)
    return found.end() if found else position


def _loads(text: str) -> Any:
    # pydantic-core's parser (jiter) first: ~1 us a bench document less than the
    # stdlib scanner, with the same values (checked on 300k numbers, big ints,
    # duplicate keys). What it refuses goes through the stdlib decoder below, so
    # errors keep its messages and what only it accepts (lone surrogates) still is.
    try:
        return pydantic_core.from_json(text, allow_inf_nan=False, cache_strings="keys")
    except ValueError:
        return _stdlib_loads(text)


def _stdlib_loads(text: str) -> Any:
    # Whitespace around a document is rare: looked for only when the text has some.
    start = _skip_space(text, 0) if text[:1] in _SPACE_CHARS else 0
    try:
        value, end = _SCAN(text, start)
    except StopIteration as exc:
        raise json.JSONDecodeError("Expecting value", text, exc.value) from None
    if end != len(text):
        end = _skip_space(text, end)
        if end != len(text):
            raise json.JSONDecodeError("Extra data", text, end)
    return value


def decode(document: pb.Document, *, generate_id: bool) -> Decoded:
    """The document as a dict with a string id, or an error naming the problem."""
    which = document.WhichOneof("body")
    body: Any
    source = None
    if which == "fields":
        body = _whole_numbers_as_ints(json_format.MessageToDict(document.fields))
    elif which == "json":
        source = document.json
        try:
            body = _loads(source)
        except ValueError as exc:
            return Decoded("", None, f"invalid JSON: {exc}")
    else:
        return Decoded("", None, "empty document: set fields or json")
    if not isinstance(body, dict):
        return Decoded("", None, "a document must be a JSON object")
    doc_id = body.get("id")
    if doc_id is None:
        if not generate_id:
            return Decoded("", None, "`id` is required for UPDATE and EMPLACE")
        doc_id = uuid.uuid4().hex
        body["id"] = doc_id
        source = None
    if not isinstance(doc_id, str):
        return Decoded("", None, "document `id` must be a string")
    # At most 4 bytes a character: short ids are not encoded to be measured.
    if not doc_id or (len(doc_id) > MAX_ID_BYTES // 4 and len(doc_id.encode()) > MAX_ID_BYTES):
        return Decoded(doc_id[:64], None, f"document `id` must be 1-{MAX_ID_BYTES} bytes")
    return Decoded(doc_id, body, source=source)


class Checker:
    """The schema check of one schema, worked out once: documents are checked by the thousand."""

    def __init__(self, schema: CollectionSchema) -> None:
        self._plan: list[tuple[str, bool, bool, Check, str]] = []
        for spec in schema.fields:
            ok, message = field_rule(spec)
            self._plan.append((spec.name, spec.optional, spec.kind.is_array, ok, message))

    def check(self, body: dict[str, Any], *, partial: bool = False) -> None:
        """Raise DocumentError unless `body` fits; partial=True for UPDATE's merge input."""
        for name, optional, is_array, ok, message in self._plan:
            value = body.get(name)
            if value is None:
                if not optional and not partial:
                    raise DocumentError(missing_message(name))
                continue
            if is_array:
                if not isinstance(value, list):
                    raise DocumentError(not_array_message(name))
                if not all(element is not None and ok(element) for element in value):
                    raise DocumentError(message)
            elif not ok(value):
                raise DocumentError(message)


Check = Callable[[Any], bool]


def field_rule(spec: FieldSpec) -> tuple[Check, str]:
    """How a value (an array's element) of `spec` is checked, and the message when it fails."""
    scalar = spec.kind.scalar
    if spec.kind.is_array:
        message = f"Field `{spec.name}` must be an array of {scalar.value}."
    else:
        article = "an" if spec.kind.value[0] in "aeiou" else "a"
        message = f"Field `{spec.name}` must be {article} {spec.kind.value}."
    return _CHECKS[scalar], message


def missing_message(name: str) -> str:
    return f"Field `{name}` has been declared in the schema, but is not found in the document."


def not_array_message(name: str) -> str:
    return f"Field `{name}` must be an array."


def _is_string(value: Any) -> bool:
    return isinstance(value, str)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


_NUMBER = (int, float)  # a tuple: `int | float` would build a union object per call


def _is_float(value: Any) -> bool:
    return isinstance(value, _NUMBER) and not isinstance(value, bool) and math.isfinite(value)


def _int_check(low: int, high: int) -> Check:
    def check(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high

    return check


_CHECKS: dict[Kind, Check] = {
    Kind.STRING: _is_string,
    Kind.BOOL: _is_bool,
    Kind.FLOAT: _is_float,
    Kind.INT32: _int_check(-(2**31), 2**31 - 1),
    Kind.INT64: _int_check(-(2**63), 2**63 - 1),
}


def merged(existing: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """UPDATE/EMPLACE: the given top-level fields replace the stored ones."""
    return {**existing, **update}
