"""Each servicer method declares whether it needs a caller identity.

`@authenticated` verifies the bearer token before the handler runs: a missing
or bad token is UNAUTHENTICATED, a JWKS that cannot be fetched UNAVAILABLE,
and the handler reads the caller with `current_identity()`. `@public` says on
purpose that a method takes anonymous calls. `undeclared_methods` lets a test
insist that every RPC of a service made that choice.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from typing import Any, Literal, Protocol, TypeVar, cast

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from marquee_authn.identity import Identity, InvalidToken
from marquee_authn.verifier import KeysUnavailable, TokenVerifier, bearer_token
from marquee_platform.errors import Unauthenticated, Unavailable

Declaration = Literal["authenticated", "public"]
_ATTRIBUTE = "__marquee_authn__"
_current: ContextVar[Identity | None] = ContextVar("marquee_authn_identity", default=None)

F = TypeVar("F", bound=Callable[..., Any])


class HasVerifier(Protocol):
    token_verifier: TokenVerifier


def current_identity() -> Identity:
    """The caller of the running `@authenticated` handler."""
    identity = _current.get()
    if identity is None:
        raise RuntimeError("current_identity() outside an @authenticated handler")
    return identity


async def identify(
    verifier: TokenVerifier, context: grpc.aio.ServicerContext[Any, Any]
) -> Identity:
    return _already_verified(verifier, context) or await _verify(verifier, context)


def _already_verified(
    verifier: TokenVerifier, context: grpc.aio.ServicerContext[Any, Any]
) -> Identity | None:
    token = bearer_token(context.invocation_metadata())
    return verifier.verified(token) if token is not None else None


async def _verify(verifier: TokenVerifier, context: grpc.aio.ServicerContext[Any, Any]) -> Identity:
    token = bearer_token(context.invocation_metadata())
    if token is None:
        raise Unauthenticated("missing credentials: send 'authorization: Bearer <access token>'")
    try:
        return await verifier.verify(token)
    except InvalidToken as exc:
        raise Unauthenticated(str(exc)) from None
    except KeysUnavailable as exc:
        raise Unavailable(str(exc)) from None


def authenticated(method: F) -> F:
    """Verify the caller's token before `method`; the servicer has a `token_verifier`."""
    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def streaming(
            self: HasVerifier, request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            identity = _already_verified(self.token_verifier, context) or await _verify(
                self.token_verifier, context
            )
            token = _current.set(identity)
            try:
                async for item in method(self, request, context):
                    yield item
            finally:
                _current.reset(token)

        wrapper: Callable[..., Any] = streaming
    else:

        @functools.wraps(method)
        async def unary(
            self: HasVerifier, request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> Any:
            # Known tokens without a coroutine: this runs before every authenticated call.
            identity = _already_verified(self.token_verifier, context) or await _verify(
                self.token_verifier, context
            )
            token = _current.set(identity)
            try:
                return await method(self, request, context)
            finally:
                _current.reset(token)

        wrapper = unary
    setattr(wrapper, _ATTRIBUTE, "authenticated")
    return cast(F, wrapper)


def public(method: F) -> F:
    """Declare that `method` serves anonymous callers."""
    setattr(method, _ATTRIBUTE, "public")
    return method


def declaration_of(method: object) -> Declaration | None:
    declared = getattr(method, _ATTRIBUTE, None)
    return cast(Declaration | None, declared)


def undeclared_methods(servicer: object, service: ServiceDescriptor) -> list[str]:
    """RPCs of `service` whose handler on `servicer` (an instance or its class) is undeclared."""
    cls = servicer if isinstance(servicer, type) else type(servicer)
    return [m.name for m in service.methods if declaration_of(getattr(cls, m.name, None)) is None]
