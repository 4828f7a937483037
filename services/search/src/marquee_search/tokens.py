"""Text into search tokens the way Typesense 0.24 does it, so both backends match the same words.

Typesense splits on whitespace and then drops every character that is not a
letter or digit from each piece: "Philosopher's" is the token "philosophers",
"J.K." is "jk" and "anti-virus" is one token "antivirus". Tokens are
lowercased and folded to ASCII where Typesense folds them (`café` is `cafe`,
`straße` is `strasse`, `æon` is `aeon`). The embedded engine indexes the
tokens this function makes, and the query is cut by the same function, so
what matches is defined here once.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# ASCII text: one pass drops every character that is neither alphanumeric nor a space.
ASCII_DROPPED = re.compile(r"[^A-Za-z0-9\s]+")


@dataclass(frozen=True)
class Token:
    """A normalized token and where its source word sits in the original text."""

    text: str
    start: int  # character offset of the word in the original text
    end: int
    # For each character of `text`, the offset of the original character it came
    # from: a prefix match is highlighted over the original characters.
    kept: tuple[int, ...]


# Letters NFKD does not decompose, spelled as Typesense spells them.
_SPECIAL = str.maketrans(
    {"ß": "ss", "æ": "ae", "Æ": "ae", "œ": "oe", "Œ": "oe", "ø": "o", "Ø": "o", "đ": "d",
     "Đ": "d", "ð": "d", "Ð": "d", "ł": "l", "Ł": "l", "þ": "th", "Þ": "th"}
)  # fmt: skip


def _fold(ch: str) -> str:
    """One character as the (possibly empty) run of token characters it becomes."""
    decomposed = unicodedata.normalize("NFKD", ch.translate(_SPECIAL)).lower()
    return "".join(c for c in decomposed if c.isalnum() and not unicodedata.combining(c))


def _normalize(word: str) -> str:
    if word.isascii():  # the common case, without a Unicode lookup per character
        return "".join(ch for ch in word if ch.isalnum()).lower()
    return "".join(_fold(ch) for ch in word)


def tokens(text: str) -> list[str]:
    """The normalized tokens of `text` (empty words are dropped)."""
    if text.isascii():
        return ASCII_DROPPED.sub("", text).lower().split()
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
        if word.isascii():
            offsets = tuple(start + i for i, ch in enumerate(word) if ch.isalnum())
            if offsets:
                token = "".join(ch for ch in word if ch.isalnum()).lower()
                result.append(Token(token, start, position, offsets))
            continue
        chars: list[str] = []
        kept: list[int] = []
        for i, ch in enumerate(word):
            folded = _fold(ch)
            chars.append(folded)
            kept.extend([start + i] * len(folded))
        token = "".join(chars)
        if token:
            result.append(Token(token, start, position, tuple(kept)))
    return result


def normalized_value(text: str) -> str:
    """What an exact string filter (`:=`) compares: the tokens joined by one space."""
    return " ".join(tokens(text))
