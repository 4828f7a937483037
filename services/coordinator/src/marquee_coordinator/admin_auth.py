"""The admin credential that guards ClusterService's membership and leadership changes.

MemberAdd, MemberRemove and TransferLeadership reshape the cluster, so outside
the dev profile they need the cluster's admin credential (K-9: admin commands
are not open), sent as gRPC metadata `authorization: Bearer <token>`. The
token is MARQUEE_COORDINATOR_ADMIN_TOKEN, or the cluster secret when that is
unset. A call without a bearer credential gets UNAUTHENTICATED, one with a
wrong credential PERMISSION_DENIED (A-8: never one code for the other).
"""

from __future__ import annotations

import hmac
from typing import Any

import grpc

from marquee_platform import errors

AUTHORIZATION_METADATA = "authorization"
SCHEME = "bearer"


class AdminGuard:
    def __init__(self, token: str | None) -> None:
        """`token` None leaves the admin calls open (the dev profile only)."""
        self._token = token.encode() if token is not None else None

    def check(self, context: grpc.aio.ServicerContext[Any, Any], method: str) -> None:
        """Raise Unauthenticated / PermissionDenied unless the call carries the admin token."""
        if self._token is None:
            return
        given = _bearer(context.invocation_metadata() or ())
        if given is None:
            raise errors.Unauthenticated(
                f"{method} changes the cluster and needs its admin credential: send metadata "
                f"'{AUTHORIZATION_METADATA}: Bearer <token>' (the node's "
                "MARQUEE_COORDINATOR_ADMIN_TOKEN, or its cluster secret when that is unset)"
            )
        # Constant time: the comparison must not tell how much of a guess was right.
        if not hmac.compare_digest(given.encode(), self._token):
            raise errors.PermissionDenied(f"{method}: the admin credential is not this cluster's")


def _bearer(metadata: Any) -> str | None:
    """The token of the first `authorization: Bearer <token>` entry; None if there is none."""
    for key, value in metadata:
        if key.lower() != AUTHORIZATION_METADATA:
            continue
        text = value.decode() if isinstance(value, bytes) else str(value)
        scheme, _, token = text.strip().partition(" ")
        if scheme.lower() == SCHEME and token.strip():
            return token.strip()
    return None
