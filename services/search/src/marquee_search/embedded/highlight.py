"""Highlights as Typesense 0.24 makes them, for the embedded engine's hits.

Per query_by field with a match: the whole value as the snippet with each
matching word wrapped in <mark></mark> (the Typesense backend asks for whole
values too, via snippet_threshold), and the matched words as they appear in the
text. A word matched as a prefix is marked only over the typed prefix
("<mark>Harr</mark>iet"); a word matched exactly or with a typo is marked whole.
Array fields get one snippet per matching element.
"""

from __future__ import annotations

from typing import Any

from marquee_search.backend import Highlight
from marquee_search.embedded.translate import MIN_LEN_ONE_TYPO
from marquee_search.schema import FieldSpec
from marquee_search.tokens import Token, tokens, tokens_with_offsets


def _distance_at_most_one(a: str, b: str) -> bool:
    """Optimal string alignment distance <= 1 (one edit or one transposition)."""
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diffs = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diffs) == 1:
            return True
        return (
            len(diffs) == 2
            and diffs[1] == diffs[0] + 1
            and a[diffs[0]] == b[diffs[1]]
            and a[diffs[1]] == b[diffs[0]]
        )
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    i = 0
    while i < len(short) and short[i] == long_[i]:
        i += 1
    return short[i:] == long_[i + 1 :]


def _match_length(word: str, token: str, last: bool) -> int:
    """How many characters of `token` a query word marks: 0 none, len(token) whole."""
    typo_ok = len(word) >= MIN_LEN_ONE_TYPO
    if token == word:
        return len(token)
    if last and token.startswith(word):
        return len(word)
    if typo_ok and _distance_at_most_one(word, token):
        return len(token)
    if last and typo_ok:
        for length in (len(word) - 1, len(word), len(word) + 1):
            if 0 < length <= len(token) and _distance_at_most_one(word, token[:length]):
                # Typesense marks as many characters as were typed ("hary": <mark>Harr</mark>iet).
                return min(len(word), len(token))
    return 0


def _mark(text: str, words: list[str]) -> tuple[str, list[str]]:
    parts: list[str] = []
    matched: list[str] = []
    position = 0
    for token in tokens_with_offsets(text):
        length = max(
            (_match_length(w, token.text, i == len(words) - 1) for i, w in enumerate(words)),
            default=0,
        )
        if not length:
            continue
        end = _end_offset(token, length)
        parts.append(text[position : token.start])
        parts.append(f"<mark>{text[token.start : end]}</mark>")
        matched.append(text[token.start : end])
        position = end
    parts.append(text[position:])
    return "".join(parts), matched


def _end_offset(token: Token, length: int) -> int:
    if length >= len(token.text) or length > len(token.kept):
        return token.end
    return token.kept[length - 1] + 1


def highlights(q: str, fields: tuple[FieldSpec, ...], document: dict[str, Any]) -> list[Highlight]:
    words = tokens(q)
    if not words:
        return []
    result = []
    for spec in fields:
        value = document.get(spec.name)
        if isinstance(value, str):
            snippet, matched = _mark(value, words)
            if matched:
                result.append(Highlight(spec.name, snippet=snippet, matched_tokens=matched))
        elif isinstance(value, list):
            snippets, all_matched = [], []
            for element in value:
                if isinstance(element, str):
                    snippet, matched = _mark(element, words)
                    if matched:
                        snippets.append(snippet)
                        all_matched.extend(matched)
            if snippets:
                result.append(Highlight(spec.name, snippets=snippets, matched_tokens=all_matched))
    return result
