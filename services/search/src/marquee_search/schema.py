"""A collection's declared schema: fields, types, flags, default sort; and which changes are safe.

One model for both backends. It is built from an EnsureCollectionRequest (every
problem reported as a field violation), stored by the embedded engine as JSON,
and read back from Typesense's collection description.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field, replace
from typing import Any

from marquee.search.v1 import search_pb2 as pb

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Field names end up inside filter/sort expressions and engine field names.
FIELD_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
MAX_FIELDS = 256

Violations = list[tuple[str, str]]


class Kind(enum.Enum):
    """A field type, named as Typesense names it."""

    STRING = "string"
    INT32 = "int32"
    INT64 = "int64"
    FLOAT = "float"
    BOOL = "bool"
    STRING_ARRAY = "string[]"
    INT32_ARRAY = "int32[]"
    INT64_ARRAY = "int64[]"
    FLOAT_ARRAY = "float[]"
    BOOL_ARRAY = "bool[]"

    @property
    def is_array(self) -> bool:
        return self.value.endswith("[]")

    @property
    def scalar(self) -> Kind:
        return Kind(self.value.removesuffix("[]"))

    @property
    def is_string(self) -> bool:
        return self.scalar is Kind.STRING

    @property
    def is_numeric(self) -> bool:
        return self.scalar in (Kind.INT32, Kind.INT64, Kind.FLOAT)


_FROM_PROTO = {
    pb.FIELD_TYPE_STRING: Kind.STRING,
    pb.FIELD_TYPE_INT32: Kind.INT32,
    pb.FIELD_TYPE_INT64: Kind.INT64,
    pb.FIELD_TYPE_FLOAT: Kind.FLOAT,
    pb.FIELD_TYPE_BOOL: Kind.BOOL,
    pb.FIELD_TYPE_STRING_ARRAY: Kind.STRING_ARRAY,
    pb.FIELD_TYPE_INT32_ARRAY: Kind.INT32_ARRAY,
    pb.FIELD_TYPE_INT64_ARRAY: Kind.INT64_ARRAY,
    pb.FIELD_TYPE_FLOAT_ARRAY: Kind.FLOAT_ARRAY,
    pb.FIELD_TYPE_BOOL_ARRAY: Kind.BOOL_ARRAY,
}
_TO_PROTO = {kind: number for number, kind in _FROM_PROTO.items()}
# In the contract but outside what both engines answer alike (README, "Search").
_UNSUPPORTED = {
    pb.FIELD_TYPE_GEOPOINT: "geopoint fields are not supported",
    pb.FIELD_TYPE_AUTO: "auto fields are not supported: declare each field's type",
}


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: Kind
    facet: bool = False
    sort: bool = False
    index: bool = True
    optional: bool = False

    def to_proto(self) -> pb.Field:
        return pb.Field(
            name=self.name,
            type=_TO_PROTO[self.kind],
            facet=self.facet,
            sort=self.sort,
            index=self.index,
            optional=self.optional,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.kind.value,
            "facet": self.facet,
            "sort": self.sort,
            "index": self.index,
            "optional": self.optional,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FieldSpec:
        return cls(
            name=str(data["name"]),
            kind=Kind(data["type"]),
            facet=bool(data.get("facet", False)),
            sort=bool(data.get("sort", False)),
            index=bool(data.get("index", True)),
            optional=bool(data.get("optional", False)),
        )


@dataclass(frozen=True)
class CollectionSchema:
    name: str
    fields: tuple[FieldSpec, ...]
    default_sorting_field: str = ""
    by_name: dict[str, FieldSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {f.name: f for f in self.fields})

    def to_proto(self, num_documents: int) -> pb.Collection:
        return pb.Collection(
            name=self.name,
            fields=[f.to_proto() for f in self.fields],
            default_sorting_field=self.default_sorting_field,
            num_documents=num_documents,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "fields": [f.to_json() for f in self.fields],
            "default_sorting_field": self.default_sorting_field,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CollectionSchema:
        return cls(
            name=str(data["name"]),
            fields=tuple(FieldSpec.from_json(f) for f in data["fields"]),
            default_sorting_field=str(data.get("default_sorting_field") or ""),
        )

    def renamed(self, name: str) -> CollectionSchema:
        return replace(self, name=name)


def check_collection_name(name: str, where: str, violations: Violations) -> None:
    if not NAME_RE.match(name):
        violations.append((where, "must be 1-64 characters of A-Z, a-z, 0-9, _ and -"))


def schema_from_request(request: pb.EnsureCollectionRequest) -> tuple[CollectionSchema, Violations]:
    """The schema a request declares, and every problem with it (empty when valid)."""
    violations: Violations = []
    check_collection_name(request.name, "name", violations)
    if not request.fields:
        violations.append(("fields", "must declare at least one field"))
    if len(request.fields) > MAX_FIELDS:
        violations.append(("fields", f"must declare at most {MAX_FIELDS} fields"))
    specs: list[FieldSpec] = []
    seen: set[str] = set()
    for i, f in enumerate(request.fields[:MAX_FIELDS]):
        if f.name in seen:
            violations.append((f"fields[{i}].name", f"duplicate field {f.name!r}"))
            continue
        seen.add(f.name)
        spec = _field_from_proto(f, f"fields[{i}]", violations)
        if spec is not None:
            specs.append(spec)
    schema = CollectionSchema(request.name, tuple(specs), request.default_sorting_field)
    if request.default_sorting_field:
        default = schema.by_name.get(request.default_sorting_field)
        if default is None:
            if request.default_sorting_field not in seen:  # not a field dropped as invalid
                violations.append(("default_sorting_field", "must name a declared field"))
        elif default.kind not in (Kind.INT32, Kind.INT64, Kind.FLOAT):
            violations.append(("default_sorting_field", "must name an int32, int64 or float field"))
        elif default.optional:
            violations.append(("default_sorting_field", "must name a field that is not optional"))
        elif not default.index:
            violations.append(("default_sorting_field", "must name an indexed field"))
    return schema, violations


def _field_from_proto(f: pb.Field, where: str, violations: Violations) -> FieldSpec | None:
    ok = True
    if not FIELD_NAME_RE.match(f.name):
        violations.append(
            (f"{where}.name", "must start with a letter and hold only A-Z, a-z, 0-9 and _")
        )
        ok = False
    elif f.name == "id":
        violations.append((f"{where}.name", "id is implicit: every document has a string id"))
        ok = False
    kind = _FROM_PROTO.get(f.type)
    if kind is None:
        reason = _UNSUPPORTED.get(f.type, "must be a known field type")
        violations.append((f"{where}.type", reason))
        return None
    index = f.index if f.HasField("index") else True
    sortable_kind = kind in (Kind.INT32, Kind.INT64, Kind.FLOAT)
    sort = f.sort if f.HasField("sort") else (sortable_kind and index)
    if sort and not sortable_kind:
        violations.append((f"{where}.sort", "only int32, int64 and float fields can be sorted on"))
        ok = False
    if f.facet and kind.scalar is Kind.FLOAT:
        violations.append((f"{where}.facet", "float fields cannot be faceted on"))
        ok = False
    if not index and (f.facet or sort):
        violations.append((f"{where}.index", "a field that is not indexed cannot be facet or sort"))
        ok = False
    if not index and not f.optional:
        violations.append((f"{where}.optional", "a field that is not indexed must be optional"))
        ok = False
    if not ok:
        return None
    return FieldSpec(f.name, kind, facet=f.facet, sort=sort, index=index, optional=f.optional)


def compatibility_problems(existing: CollectionSchema, wanted: CollectionSchema) -> list[str]:
    """Why `existing` cannot become `wanted` in place; empty when it can.

    Allowed: the same schema, or the same plus new optional fields. Anything else
    (a field dropped or changed, a new required field, another default sort)
    would change or invalidate documents already indexed.
    """
    problems = []
    for old in existing.fields:
        new = wanted.by_name.get(old.name)
        if new is None:
            problems.append(f"field {old.name!r} would be dropped")
        elif new != old:
            problems.append(
                f"field {old.name!r} would change from {_describe(old)} to {_describe(new)}"
            )
    for new in wanted.fields:
        if new.name not in existing.by_name and not new.optional:
            problems.append(f"new field {new.name!r} must be optional: existing documents lack it")
    if existing.default_sorting_field != wanted.default_sorting_field:
        problems.append(
            f"default_sorting_field would change from {existing.default_sorting_field!r} "
            f"to {wanted.default_sorting_field!r}"
        )
    return problems


def added_fields(existing: CollectionSchema, wanted: CollectionSchema) -> list[FieldSpec]:
    return [f for f in wanted.fields if f.name not in existing.by_name]


def _describe(spec: FieldSpec) -> str:
    flags = [name for name in ("facet", "sort", "optional") if getattr(spec, name)]
    if not spec.index:
        flags.append("not indexed")
    return spec.kind.value + (f" ({', '.join(flags)})" if flags else "")
