"""Text into search tokens the way Typesense 0.24 does it, so both backends match the same words.

Typesense splits on whitespace and then drops every character that is not a
letter or digit from each piece: "Philosopher's" is the token "philosophers",
"J.K." is "jk" and "anti-virus" is one token "antivirus". Tokens are
lowercased. The embedded engine indexes the tokens this function makes, and
the query is cut by the same function, so what matches is defined here once.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Token:
    """A normalized token and where its source word sits in the original text."""

    text: str
    start: int  # character offset of the word in the original text
    end: int
    # Offsets in the original text of each kept character, for highlighting prefixes.
    kept: tuple[int, ...]


def _normalize(word: str) -> str:
    return "".join(ch for ch in word if ch.isalnum()).lower()


def tokens(text: str) -> list[str]:
    """The normalized tokens of `text` (empty words are dropped)."""
    result = []
    for word in text.split():
        token = _normalize(word)
        if token:
            result.append(token)
    return result


def tokens_with_offsets(text: str) -> list[Token]:
    result = []
    position = 0
    for word in text.split():
        start = text.index(word, position)
        position = start + len(word)
        kept = tuple(start + i for i, ch in enumerate(word) if ch.isalnum())
        token = _normalize(word)
        if token:
            result.append(Token(token, start, position, kept))
    return result


def normalized_value(text: str) -> str:
    """What an exact string filter (`:=`) compares: the tokens joined by one space."""
    return " ".join(tokens(text))
