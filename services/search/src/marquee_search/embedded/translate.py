"""Queries and filters as tantivy queries, matching what Typesense 0.24 matches.

Text (checked against a real Typesense with the parameters the Typesense
backend sends): every query token must match in some query_by field; the last
token also matches as a prefix; a token of 4 or more characters also matches
with one typo (a transposition counts as one). Scores order results the way
Typesense's first criteria do (see the weights below). Each match kind gets a
constant score and a token takes its best one, so the sum is exact in a float.
"""

from __future__ import annotations

import tantivy

from marquee_search.embedded.layout import exact_phrase, float_key, text_field, value_field
from marquee_search.expressions import (
    All,
    Any_,
    BoolClause,
    Filter,
    NumberClause,
    StringClause,
    StringMode,
)
from marquee_search.schema import FieldSpec, Kind
from marquee_search.tokens import tokens

MIN_LEN_ONE_TYPO = 4
# A token's score, from its best match: without a typo beats with one; then a whole
# word beats the completion of a prefix ("potter" ranks "Potter" above "Potter's",
# "hary" ranks "Harry" above "Harriet"); then earlier query_by fields. Checked
# against Typesense's order on the same documents (tests/test_search_contract.py).
NO_TYPO_WEIGHT = 10_000.0
WHOLE_WORD_WEIGHT = 100.0  # above any field bonus: at most 100 query_by fields


def _field_bonus(rank: int, fields: int) -> float:
    return float(fields - rank)


def text_query(
    schema: tantivy.Schema, q: str, fields: tuple[FieldSpec, ...]
) -> tantivy.Query | None:
    """None when q has no tokens (nothing can match)."""
    words = tokens(q)
    if not words:
        return None
    per_token = []
    for i, word in enumerate(words):
        last = i == len(words) - 1
        typo_ok = len(word) >= MIN_LEN_ONE_TYPO
        options = []
        for rank, spec in enumerate(fields):
            name = text_field(spec)
            matches = [
                (tantivy.Query.term_query(schema, name, word), NO_TYPO_WEIGHT + WHOLE_WORD_WEIGHT)
            ]
            if last:
                prefix = tantivy.Query.fuzzy_term_query(schema, name, word, distance=0, prefix=True)
                matches.append((prefix, NO_TYPO_WEIGHT))
            if typo_ok:
                whole = tantivy.Query.fuzzy_term_query(
                    schema, name, word, distance=1, transposition_cost_one=True, prefix=False
                )
                matches.append((whole, WHOLE_WORD_WEIGHT))
                if last:
                    completed = tantivy.Query.fuzzy_term_query(
                        schema, name, word, distance=1, transposition_cost_one=True, prefix=True
                    )
                    matches.append((completed, 0.0))
            bonus = _field_bonus(rank, len(fields))
            options += [tantivy.Query.const_score_query(q, w + bonus) for q, w in matches]
        per_token.append((tantivy.Occur.Must, tantivy.Query.disjunction_max_query(options)))
    return tantivy.Query.boolean_query(per_token)


def _any(queries: list[tantivy.Query]) -> tantivy.Query:
    if len(queries) == 1:
        return queries[0]
    return tantivy.Query.boolean_query([(tantivy.Occur.Should, q) for q in queries])


def _not(query: tantivy.Query) -> tantivy.Query:
    return tantivy.Query.boolean_query(
        [(tantivy.Occur.Must, tantivy.Query.all_query()), (tantivy.Occur.MustNot, query)]
    )


def filter_query(schema: tantivy.Schema, node: Filter) -> tantivy.Query:
    if isinstance(node, All):
        parts = [(tantivy.Occur.Must, filter_query(schema, p)) for p in node.parts]
        return tantivy.Query.boolean_query(parts)
    if isinstance(node, Any_):
        return _any([filter_query(schema, p) for p in node.parts])
    if isinstance(node, StringClause):
        return _string(schema, node)
    if isinstance(node, BoolClause):
        name = value_field(node.field)
        return _any([tantivy.Query.term_query(schema, name, v) for v in sorted(node.values)])
    return _number(schema, node)


def _string(schema: tantivy.Schema, clause: StringClause) -> tantivy.Query:
    if clause.mode is StringMode.CONTAINS:
        name = text_field(clause.field)
        alternatives = []
        for words in clause.values:
            assert isinstance(words, tuple)
            alternatives.append(
                tantivy.Query.boolean_query(
                    [(tantivy.Occur.Must, tantivy.Query.term_query(schema, name, w)) for w in words]
                )
            )
        return _any(alternatives)
    name = text_field(clause.field)
    matches = _any(
        [
            tantivy.Query.phrase_query(schema, name, exact_phrase(v))
            for v in clause.values
            if isinstance(v, str)
        ]
    )
    return matches if clause.mode is StringMode.EQUALS else _not(matches)


def _number(schema: tantivy.Schema, clause: NumberClause) -> tantivy.Query:
    name = value_field(clause.field)
    # A float field holds float_key (an integer in the same order); the clause's
    # floats are float32 values already (expressions.py).
    key = float_key if clause.field.kind.scalar is Kind.FLOAT else int
    alternatives = []
    for interval in clause.intervals:
        low = None if interval.low is None else key(interval.low)
        high = None if interval.high is None else key(interval.high)
        if low is not None and low == high and interval.include_low and interval.include_high:
            alternatives.append(tantivy.Query.term_query(schema, name, low))
            continue
        alternatives.append(
            tantivy.Query.range_query(
                schema,
                name,
                tantivy.FieldType.Integer,
                low,
                high,
                include_lower=interval.include_low,
                include_upper=interval.include_high,
            )
        )
    return _any(alternatives)
