"""Request checks that answer INVALID_ARGUMENT with one field violation per problem."""

from __future__ import annotations

from google.protobuf.duration_pb2 import Duration

from marquee_coordinator.raft_node import MAX_KEY_LENGTH, MAX_LEASE_TTL
from marquee_platform import errors

# Leases with this prefix are elections (K-8): only the ElectionService may name them,
# so a lease call can neither take over nor end an election (nor renew one for its leader).
ELECTION_PREFIX = "_election/"


class Violations:
    def __init__(self) -> None:
        self._found: list[tuple[str, str]] = []

    def key(self, field: str, value: str, *, required: bool = True) -> None:
        if required and not value:
            self._found.append((field, "must not be empty"))
        elif len(value.encode()) > MAX_KEY_LENGTH:
            self._found.append((field, f"must be at most {MAX_KEY_LENGTH} bytes"))

    def lease_name(self, field: str, value: str) -> None:
        """A name the LeaseService may use: a key outside the election namespace."""
        self.key(field, value)
        if value.startswith(ELECTION_PREFIX):
            self._found.append(
                (
                    field,
                    f"must not start with {ELECTION_PREFIX!r}: names under it are elections, "
                    "reserved for the ElectionService (Campaign, Proclaim, Resign)",
                )
            )

    def ttl(self, field: str, value: Duration, minimum: float, *, required: bool = True) -> None:
        if not value.ByteSize():
            if required:
                self._found.append((field, "is required"))
            return
        seconds = value.ToNanoseconds() / 1e9
        if not minimum <= seconds <= MAX_LEASE_TTL:
            # Shorter than two election timeouts, a lease would expire in every failover.
            self._found.append((field, f"must be within [{minimum}, {MAX_LEASE_TTL}] seconds"))

    def check(self, ok: bool, field: str, description: str) -> None:
        if not ok:
            self._found.append((field, description))

    def raise_if_any(self) -> None:
        if self._found:
            summary = "; ".join(f"{field} {problem}" for field, problem in self._found)
            raise errors.InvalidArgument(f"invalid argument: {summary}", self._found)
