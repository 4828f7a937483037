"""The filter_by / sort_by subset parser on its own: trees, precedence, quoting, errors."""

from __future__ import annotations

import pytest

from marquee_search.expressions import (
    All,
    Any_,
    BoolClause,
    ExpressionError,
    Interval,
    NumberClause,
    SortClause,
    StringClause,
    StringMode,
    float32,
    parse_filter,
    parse_sort,
)
from marquee_search.schema import CollectionSchema, FieldSpec, Kind
from marquee_search.tokens import normalized_value, tokens

SCHEMA = CollectionSchema(
    "books",
    (
        FieldSpec("author", Kind.STRING, facet=True),
        FieldSpec("tags", Kind.STRING_ARRAY, optional=True),
        FieldSpec("year", Kind.INT32, sort=True),
        FieldSpec("rating", Kind.FLOAT, sort=True),
        FieldSpec("in_stock", Kind.BOOL),
        FieldSpec("notes", Kind.STRING, index=False, optional=True),
    ),
)
AUTHOR, TAGS, YEAR, RATING, IN_STOCK, _ = SCHEMA.fields


def test_tokens_follow_typesense() -> None:
    assert tokens("Harry Potter and the Philosopher's Stone") == [
        "harry", "potter", "and", "the", "philosophers", "stone"
    ]  # fmt: skip
    assert tokens("J.K.  Rowling -- anti-virus") == ["jk", "rowling", "antivirus"]
    assert normalized_value("  Rock   STAR! ") == "rock star"


def test_clauses() -> None:
    assert parse_filter("year:>1990", SCHEMA) == NumberClause(
        YEAR, (Interval(1990, None, include_low=False),)
    )
    assert parse_filter("year:[1..5, 9]", SCHEMA) == NumberClause(
        YEAR, (Interval(1, 5), Interval(9, 9))
    )
    assert parse_filter("author:= J.K. Rowling ", SCHEMA) == StringClause(
        AUTHOR, StringMode.EQUALS, ("jk rowling",)
    )
    assert parse_filter("author:=`a && b`", SCHEMA) == StringClause(
        AUTHOR, StringMode.EQUALS, ("a b",)
    )
    assert parse_filter("tags:!=[x, `y, z`]", SCHEMA) == StringClause(
        TAGS, StringMode.NOT_EQUALS, ("x", "y z")
    )
    assert parse_filter("author:rock star", SCHEMA) == StringClause(
        AUTHOR, StringMode.CONTAINS, (("rock", "star"),)
    )
    assert parse_filter("in_stock:=[true,false]", SCHEMA) == BoolClause(
        IN_STOCK, frozenset({True, False})
    )
    rating = parse_filter("rating:<=3.9", SCHEMA)
    assert rating == NumberClause(RATING, (Interval(None, float32(3.9)),))
    assert parse_filter("   ", SCHEMA) is None


def test_and_or_apply_left_to_right_like_typesense() -> None:
    a = parse_filter("year:1", SCHEMA)
    b = parse_filter("year:2", SCHEMA)
    c = parse_filter("year:3", SCHEMA)
    assert a is not None
    assert b is not None
    assert c is not None
    assert parse_filter("year:1 || year:2 && year:3", SCHEMA) == All((Any_((a, b)), c))
    assert parse_filter("year:1 && year:2 || year:3", SCHEMA) == Any_((All((a, b)), c))
    assert parse_filter("year:1 || (year:2 && year:3)", SCHEMA) == Any_((a, All((b, c))))
    assert parse_filter("year:1&&year:2&&year:3", SCHEMA) == All((a, b, c))


def test_a_parenthesis_is_part_of_a_value_outside_a_group() -> None:
    assert parse_filter("author:=Smith (Jr)", SCHEMA) == StringClause(
        AUTHOR, StringMode.EQUALS, ("smith jr",)
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope:1", "unknown field"),
        ("notes:=x", "not indexed"),
        ("year:!=1", "'!='"),
        ("year:>1.5", "integer"),
        ("rating:>x", "number"),
        ("author:<x", "compared"),
        ("in_stock:yes", "true or false"),
        ("year:1..2", "inside [ ]"),
        ("year:>[1,2]", "one number"),
        ("year", "field:value"),
        ("year:", "missing value"),
        (":1", "missing field"),
        ("(year:1", "missing ')'"),
        ("year:[1,2", "missing ']'"),
        ("author:=`x", "unterminated"),
        ("author:!!!", "no letters"),
        ("(" * 20 + "year:1" + ")" * 20, "nesting"),
        (" || ".join(["year:1"] * 65), "clauses"),
    ],
)
def test_errors_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ExpressionError) as error:
        parse_filter(text, SCHEMA)
    assert message in str(error.value)


def test_sort() -> None:
    assert parse_sort(["year:desc", "_text_match:ASC"], SCHEMA) == [
        SortClause("year", True),
        SortClause("_text_match", False),
    ]
    for bad in (["author:asc"], ["year"], ["year:sideways"], ["nope:asc"]):
        with pytest.raises(ExpressionError):
            parse_sort(bad, SCHEMA)
    with pytest.raises(ExpressionError, match="at most 3"):
        parse_sort(["year:asc"] * 4, SCHEMA)


def test_offsets_point_at_the_original_characters() -> None:
    from marquee_search.tokens import tokens_with_offsets

    text = "  Philosopher's  Straße "
    found = tokens_with_offsets(text)
    assert [t.text for t in found] == tokens(text) == ["philosophers", "strasse"]
    first, second = found
    assert text[first.start : first.end] == "Philosopher's"
    assert [text[i] for i in first.kept[-2:]] == ["r", "s"]  # the apostrophe is skipped
    assert [text[i] for i in second.kept[4:6]] == ["ß", "ß"]  # "ss" both come from ß
