"""Responses a handler hands over already encoded, for the rare path where building them dominates.

A handler may return (or yield) the wire bytes of its response message
instead of the message: every method's serializer on the platform's server
sends bytes as they are (RpcObserver). Measured in the coordinator's
leader-local renewal, building the nested response messages cost ~30 us of
a ~160 us call on the server's event loop, while the bytes of the parts
that do not change could be kept per lease (docs/benchmarks.md, coordinator).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

M = TypeVar("M")

Serializer = Callable[[Any], bytes]


def pre_encoded(data: bytes, message_type: type[M]) -> M:
    """`data`, the wire form of a `message_type`, to return from a handler in its place.

    The type is for the reader and for mypy: the servicer's declared return
    type stays the message's, and nothing is checked at run time.
    """
    return cast(M, data)


def passing_encoded(serializer: Serializer | None) -> Serializer | None:
    """`serializer`, except that bytes a handler encoded itself pass unchanged."""
    if serializer is None:
        return None

    def serialize(message: Any) -> bytes:
        return message if type(message) is bytes else serializer(message)

    return serialize
