"""Request checks: every problem of a request is reported at once as a field violation."""

from __future__ import annotations

from marquee.search.v1 import search_pb2 as pb
from marquee_platform import errors
from marquee_search.backend import Action, SearchQuery
from marquee_search.expressions import (
    ExpressionError,
    Filter,
    check_facets,
    parse_filter,
    parse_sort,
)
from marquee_search.schema import CollectionSchema, Violations, check_collection_name
from marquee_search.tokens import tokens

MAX_PER_PAGE = 250
DEFAULT_PER_PAGE = 10
DEFAULT_FACET_VALUES = 10
MAX_FACET_VALUES = 1000
MAX_PAGE = 1_000_000
MAX_IDS = 10_000
MAX_QUERY_CHARS = 2048
MAX_QUERY_BY = 64  # the embedded engine's field bonus stays below its whole-word weight

_ACTIONS = {
    pb.INDEX_ACTION_UNSPECIFIED: Action.CREATE,
    pb.INDEX_ACTION_CREATE: Action.CREATE,
    pb.INDEX_ACTION_UPSERT: Action.UPSERT,
    pb.INDEX_ACTION_UPDATE: Action.UPDATE,
    pb.INDEX_ACTION_EMPLACE: Action.EMPLACE,
}


def raise_if(violations: Violations, what: str) -> None:
    if violations:
        summary = "; ".join(f"{field} {problem}" for field, problem in violations)
        raise errors.InvalidArgument(f"invalid {what}: {summary}", violations)


def check_name(name: str, field: str, what: str) -> None:
    violations: Violations = []
    check_collection_name(name, field, violations)
    raise_if(violations, what)


def check_index(request: pb.IndexRequest, max_documents: int) -> Action:
    violations: Violations = []
    check_collection_name(request.collection, "collection", violations)
    if not request.documents:
        violations.append(("documents", "must hold at least one document"))
    elif len(request.documents) > max_documents:
        violations.append(("documents", f"must hold at most {max_documents} documents"))
    action = _ACTIONS.get(request.action)
    if action is None:
        violations.append(("action", f"unknown value {request.action}"))
    raise_if(violations, "Index request")
    assert action is not None
    return action


def check_delete(request: pb.DeleteRequest, schema: CollectionSchema) -> Filter | None:
    violations: Violations = []
    has_ids, has_filter = bool(request.ids), bool(request.filter_by.strip())
    if has_ids == has_filter:
        violations.append(("ids", "exactly one of ids and filter_by must be set"))
    if len(request.ids) > MAX_IDS:
        violations.append(("ids", f"must name at most {MAX_IDS} ids"))
    for i, doc_id in enumerate(request.ids[:MAX_IDS]):
        if not doc_id:
            violations.append((f"ids[{i}]", "must not be empty"))
    parsed = None
    if has_filter:
        try:
            parsed = parse_filter(request.filter_by, schema)
        except ExpressionError as exc:
            violations.append(("filter_by", str(exc)))
    raise_if(violations, "Delete request")
    return parsed


def check_search(request: pb.SearchRequest, schema: CollectionSchema) -> SearchQuery:
    violations: Violations = []
    q = request.q.strip()
    # Typesense answers a q without a single token (e.g. "*", "", "?!") as a match-all.
    wildcard = not tokens(q)
    if len(request.q) > MAX_QUERY_CHARS:
        violations.append(("q", f"must be at most {MAX_QUERY_CHARS} characters"))
    query_by = []
    for i, name in enumerate(request.query_by):
        spec = schema.by_name.get(name)
        if spec is None:
            violations.append((f"query_by[{i}]", f"unknown field {name!r}"))
        elif not spec.kind.is_string or not spec.index:
            violations.append((f"query_by[{i}]", f"field {name!r} is not an indexed string field"))
        else:
            query_by.append(spec)
    if len(request.query_by) > MAX_QUERY_BY:
        violations.append(("query_by", f"must name at most {MAX_QUERY_BY} fields"))
    if not wildcard and not request.query_by:
        violations.append(("query_by", "is required unless q is '*'"))
    parsed = None
    try:
        parsed = parse_filter(request.filter_by, schema)
    except ExpressionError as exc:
        violations.append(("filter_by", str(exc)))
    facets = []
    try:
        facets = check_facets(list(request.facet_by), schema)
    except ExpressionError as exc:
        violations.append(("facet_by", str(exc)))
    sort = []
    try:
        sort = parse_sort(list(request.sort_by), schema)
    except ExpressionError as exc:
        violations.append(("sort_by", str(exc)))
    if not 0 <= request.page <= MAX_PAGE:
        violations.append(("page", f"must be between 0 and {MAX_PAGE}"))
    if not 0 <= request.per_page <= MAX_PER_PAGE:
        violations.append(("per_page", f"must be between 0 and {MAX_PER_PAGE}"))
    if not 0 <= request.max_facet_values <= MAX_FACET_VALUES:
        violations.append(("max_facet_values", f"must be between 0 and {MAX_FACET_VALUES}"))
    for field in ("include_fields", "exclude_fields"):
        for i, name in enumerate(getattr(request, field)):
            if not name or "," in name:
                violations.append((f"{field}[{i}]", "must be one field name"))
    raise_if(violations, "Search request")
    return SearchQuery(
        q=q,
        wildcard=wildcard,
        query_by=tuple(query_by),
        filter=parsed,
        filter_text=request.filter_by,
        facets=tuple(facets),
        sort=tuple(sort),
        page=request.page or 1,
        per_page=request.per_page or DEFAULT_PER_PAGE,
        max_facet_values=request.max_facet_values or DEFAULT_FACET_VALUES,
        include_fields=tuple(request.include_fields),
        exclude_fields=tuple(request.exclude_fields),
    )
