"""Local verification of Marquee access tokens against the auth service's cached JWKS.

A service builds one `TokenVerifier` (keys from `GrpcJwksSource`, i.e. auth's
GetJwks) and declares each servicer method `@authenticated` or `@public`; an
authenticated handler reads the caller with `current_identity()`.
"""

from marquee_authn.declare import (
    authenticated,
    current_identity,
    declaration_of,
    public,
    undeclared_methods,
)
from marquee_authn.identity import Identity, InvalidToken
from marquee_authn.jwks import GrpcJwksSource, JwksSource, StaticJwksSource
from marquee_authn.verifier import ACCESS_TOKEN_ALGORITHM, TokenVerifier, bearer_token

__all__ = [
    "ACCESS_TOKEN_ALGORITHM",
    "GrpcJwksSource",
    "Identity",
    "InvalidToken",
    "JwksSource",
    "StaticJwksSource",
    "TokenVerifier",
    "authenticated",
    "bearer_token",
    "current_identity",
    "declaration_of",
    "public",
    "undeclared_methods",
]
