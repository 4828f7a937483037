"""The Typesense filter_by / sort_by / facet_by subset both backends answer, parsed and checked.

filter_by (Typesense 0.24 syntax):

    expr    := factor ( ( "&&" | "||" ) factor )*
    factor  := "(" expr ")" | clause
    clause  := field ":" [ "=" | "!=" | ">" | ">=" | "<" | "<=" ] value
    value   := "[" item ( "," item )* "]" | item
    item    := "`" text "`" | number ".." number | text

Per field type (what Typesense 0.24 accepts, checked against a real server):
- string, string[]: `f:words` (the field holds every word, any order), `f:=value`
  (the whole value, case and punctuation ignored), `f:!=value` (no element equals
  it; a document without the field matches); a list means any of / none of.
- int32, int64, float (and arrays): `f:5`, `f:=5`, `f:>5` `>=` `<` `<=`,
  `f:[1..9]` (inclusive), `f:[1, 5..9]` (any); `!=` is refused, as Typesense does.
- bool: `f:true`, `f:=[true,false]`.
`&&` and `||` bind equally and apply left to right, as Typesense 0.24 does:
`a || b && c` is `(a || b) && c`. Use parentheses to say otherwise.
A parsed expression is checked against the schema: unknown, unindexed or
mistyped fields are errors that name the problem.
"""

from __future__ import annotations

import enum
import math
import re
import struct
from dataclasses import dataclass

from marquee_search.schema import CollectionSchema, FieldSpec, Kind
from marquee_search.tokens import normalized_value, tokens

MAX_FILTER_CHARS = 4096
MAX_CLAUSES = 64
MAX_DEPTH = 16
MAX_SORT_CLAUSES = 3
TEXT_MATCH = "_text_match"
_NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_INT_RE = re.compile(r"^[+-]?\d+$")
_OPERATORS = ("!=", ">=", "<=", "=", ">", "<")


class ExpressionError(ValueError):
    """A filter, sort or facet expression that is malformed or does not fit the schema."""


def float32(value: float) -> float:
    """Typesense keeps floats as float32, so comparisons happen at that precision."""
    try:
        return float(struct.unpack("f", struct.pack("f", value))[0])
    except OverflowError:
        return math.copysign(math.inf, value)


# ---- the filter tree ----------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """Numbers between low and high; None is unbounded."""

    low: float | None
    high: float | None
    include_low: bool = True
    include_high: bool = True


class StringMode(enum.Enum):
    CONTAINS = "contains"  # f:words
    EQUALS = "equals"  # f:=value
    NOT_EQUALS = "not_equals"  # f:!=value


@dataclass(frozen=True)
class StringClause:
    field: FieldSpec
    mode: StringMode
    # CONTAINS: each value's tokens; EQUALS / NOT_EQUALS: each value normalized.
    values: tuple[tuple[str, ...], ...] | tuple[str, ...]


@dataclass(frozen=True)
class NumberClause:
    field: FieldSpec
    intervals: tuple[Interval, ...]  # any of


@dataclass(frozen=True)
class BoolClause:
    field: FieldSpec
    values: frozenset[bool]  # any of


@dataclass(frozen=True)
class All:
    parts: tuple[Filter, ...]


@dataclass(frozen=True)
class Any_:
    parts: tuple[Filter, ...]


Filter = StringClause | NumberClause | BoolClause | All | Any_


# ---- filter parsing -------------------------------------------------------------------------


@dataclass
class _Raw:
    field: str
    operator: str  # "" for a bare ":"
    items: list[str]
    is_list: bool
    quoted: list[bool]


class _Parser:
    def __init__(self, text: str, schema: CollectionSchema) -> None:
        self.text = text
        self.pos = 0
        self.schema = schema
        self.clauses = 0

    def fail(self, message: str) -> ExpressionError:
        return ExpressionError(f"{message} at position {self.pos}")

    def skip_spaces(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self, token: str) -> bool:
        self.skip_spaces()
        return self.text.startswith(token, self.pos)

    def parse(self) -> Filter:
        result = self.expr(0)
        self.skip_spaces()
        if self.pos != len(self.text):
            raise self.fail(f"unexpected {self.text[self.pos : self.pos + 10]!r}")
        return result

    def expr(self, depth: int) -> Filter:
        if depth > MAX_DEPTH:
            raise self.fail(f"nesting deeper than {MAX_DEPTH}")
        result = self.factor(depth)
        while True:
            if self.peek("&&"):
                self.pos += 2
                result = _joined(All, result, self.factor(depth))
            elif self.peek("||"):
                self.pos += 2
                result = _joined(Any_, result, self.factor(depth))
            else:
                return result

    def factor(self, depth: int) -> Filter:
        if self.peek("("):
            self.pos += 1
            inner = self.expr(depth + 1)
            if not self.peek(")"):
                raise self.fail("missing ')'")
            self.pos += 1
            return inner
        self.clauses += 1
        if self.clauses > MAX_CLAUSES:
            raise self.fail(f"more than {MAX_CLAUSES} clauses")
        return _clause(self.raw_clause(depth), self.schema)

    def raw_clause(self, depth: int) -> _Raw:
        self.skip_spaces()
        colon = self.text.find(":", self.pos)
        if colon < 0:
            raise self.fail("expected field:value")
        name = self.text[self.pos : colon].strip()
        if not name:
            raise self.fail("missing field name before ':'")
        self.pos = colon + 1
        self.skip_spaces()
        operator = next((op for op in _OPERATORS if self.text.startswith(op, self.pos)), "")
        self.pos += len(operator)
        self.skip_spaces()
        if self.text.startswith("[", self.pos):
            self.pos += 1
            items, quoted = [], []
            while True:
                item, was_quoted = self.item(stops=(",", "]"), depth=depth)
                items.append(item)
                quoted.append(was_quoted)
                self.skip_spaces()
                if self.text.startswith(",", self.pos):
                    self.pos += 1
                    continue
                if self.text.startswith("]", self.pos):
                    self.pos += 1
                    break
                raise self.fail("missing ']'")
            return _Raw(name, operator, items, True, quoted)
        item, was_quoted = self.item(stops=("&&", "||", ")"), depth=depth)
        return _Raw(name, operator, [item], False, [was_quoted])

    def item(self, stops: tuple[str, ...], depth: int) -> tuple[str, bool]:
        self.skip_spaces()
        if self.text.startswith("`", self.pos):
            end = self.text.find("`", self.pos + 1)
            if end < 0:
                raise self.fail("unterminated `")
            value = self.text[self.pos + 1 : end]
            self.pos = end + 1
            return value, True
        start = self.pos
        while self.pos < len(self.text):
            at_stop = any(self.text.startswith(stop, self.pos) for stop in stops)
            # A ")" closes a group only inside one; at the top level it is part of the value.
            if at_stop and (self.text[self.pos] != ")" or depth > 0):
                break
            self.pos += 1
        value = self.text[start : self.pos].strip()
        if not value:
            raise self.fail("missing value")
        return value, False


def _joined(kind: type[All] | type[Any_], left: Filter, right: Filter) -> Filter:
    """Left to right: `a && b && c` stays one flat All."""
    if isinstance(left, kind):
        return kind((*left.parts, right))
    return kind((left, right))


def parse_filter(text: str, schema: CollectionSchema) -> Filter | None:
    """The filter tree of `text` (None when blank); ExpressionError says what is wrong."""
    if not text.strip():
        return None
    if len(text) > MAX_FILTER_CHARS:
        raise ExpressionError(f"longer than {MAX_FILTER_CHARS} characters")
    return _Parser(text, schema).parse()


def _filterable(name: str, schema: CollectionSchema) -> FieldSpec:
    spec = schema.by_name.get(name)
    if spec is None:
        raise ExpressionError(f"unknown field {name!r}")
    if not spec.index:
        raise ExpressionError(f"field {name!r} is not indexed, so it cannot be filtered on")
    return spec


def _clause(raw: _Raw, schema: CollectionSchema) -> Filter:
    spec = _filterable(raw.field, schema)
    if spec.kind.is_string:
        return _string_clause(spec, raw)
    if spec.kind.scalar is Kind.BOOL:
        if raw.operator not in ("", "="):
            raise ExpressionError(f"bool field {spec.name!r} takes only ':' or ':='")
        values = set()
        for item in raw.items:
            if item not in ("true", "false"):
                raise ExpressionError(f"bool field {spec.name!r}: {item!r} is not true or false")
            values.add(item == "true")
        return BoolClause(spec, frozenset(values))
    return _number_clause(spec, raw)


def _string_clause(spec: FieldSpec, raw: _Raw) -> StringClause:
    if raw.operator == "":
        token_lists = tuple(tuple(tokens(item)) for item in raw.items)
        if any(not t for t in token_lists):
            raise ExpressionError(f"field {spec.name!r}: a value has no letters or digits")
        return StringClause(spec, StringMode.CONTAINS, token_lists)
    if raw.operator in ("=", "!="):
        values = tuple(normalized_value(item) for item in raw.items)
        mode = StringMode.EQUALS if raw.operator == "=" else StringMode.NOT_EQUALS
        return StringClause(spec, mode, values)
    raise ExpressionError(f"string field {spec.name!r} cannot be compared with {raw.operator!r}")


def _number(spec: FieldSpec, text: str) -> float:
    is_int = spec.kind.scalar in (Kind.INT32, Kind.INT64)
    if not (_INT_RE if is_int else _NUMBER_RE).match(text.strip()):
        kind = "an integer" if is_int else "a number"
        raise ExpressionError(f"field {spec.name!r}: {text!r} is not {kind}")
    if is_int:
        return int(text)
    return float32(float(text))


def _number_clause(spec: FieldSpec, raw: _Raw) -> NumberClause:
    if raw.operator == "!=":
        raise ExpressionError(f"numeric field {spec.name!r} cannot be compared with '!='")
    if raw.operator in (">", ">=", "<", "<="):
        if raw.is_list:
            raise ExpressionError(f"field {spec.name!r}: {raw.operator!r} takes one number")
        value = _number(spec, raw.items[0])
        interval = {
            ">": Interval(value, None, include_low=False),
            ">=": Interval(value, None),
            "<": Interval(None, value, include_high=False),
            "<=": Interval(None, value),
        }[raw.operator]
        return NumberClause(spec, (interval,))
    intervals = []
    for item, quoted in zip(raw.items, raw.quoted, strict=True):
        if ".." in item and not quoted:
            if not raw.is_list:
                raise ExpressionError(f"field {spec.name!r}: a range must be inside [ ]")
            low_text, _, high_text = item.partition("..")
            low, high = _number(spec, low_text), _number(spec, high_text)
            intervals.append(Interval(low, high))
        else:
            value = _number(spec, item)
            intervals.append(Interval(value, value))
    return NumberClause(spec, tuple(intervals))


# ---- sort_by and facet_by ---------------------------------------------------------------------


@dataclass(frozen=True)
class SortClause:
    field: str  # a schema field or TEXT_MATCH
    descending: bool


def parse_sort(clauses: list[str], schema: CollectionSchema) -> list[SortClause]:
    if len(clauses) > MAX_SORT_CLAUSES:
        raise ExpressionError(f"at most {MAX_SORT_CLAUSES} sort clauses")
    result = []
    for clause in clauses:
        name, colon, order = clause.strip().rpartition(":")
        name, order = name.strip(), order.strip().lower()
        if not colon or order not in ("asc", "desc"):
            raise ExpressionError(f"{clause!r} must be field:asc or field:desc")
        if name != TEXT_MATCH:
            spec = schema.by_name.get(name)
            if spec is None:
                raise ExpressionError(f"unknown field {name!r}")
            if not spec.sort:
                raise ExpressionError(f"field {name!r} is not sortable")
        result.append(SortClause(name, order == "desc"))
    return result


def check_facets(names: list[str], schema: CollectionSchema) -> list[FieldSpec]:
    result = []
    for name in names:
        spec = schema.by_name.get(name.strip())
        if spec is None:
            raise ExpressionError(f"unknown field {name!r}")
        if not spec.facet:
            raise ExpressionError(f"field {name!r} is not a facet field")
        result.append(spec)
    return result
