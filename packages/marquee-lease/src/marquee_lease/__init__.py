"""Client library of the Marquee coordinator: leases with fencing tokens, elections, membership.

Typical use::

    async with CoordinatorClient(endpoints) as client:
        async with client.lease("jobs/cleanup", ttl=10) as held:
            await write(data, fencing_token=held.token)
"""

from marquee_lease.client import CoordinatorClient
from marquee_lease.elections import Leadership
from marquee_lease.errors import (
    CoordinatorError,
    LeaseLost,
    LeaseTaken,
    LeaseUnavailable,
    NotHeld,
    RequestRejected,
)
from marquee_lease.leases import HeldLease
from marquee_lease.models import (
    AcquireResult,
    ClusterStatus,
    ElectionLeader,
    Header,
    LeaderKey,
    LeaseInfo,
    LeaseList,
    Member,
    Membership,
    RenewResult,
    Transfer,
)
from marquee_lease.retry import Backoff, Deadline

__all__ = [
    "AcquireResult",
    "Backoff",
    "ClusterStatus",
    "CoordinatorClient",
    "CoordinatorError",
    "Deadline",
    "ElectionLeader",
    "Header",
    "HeldLease",
    "LeaderKey",
    "Leadership",
    "LeaseInfo",
    "LeaseList",
    "LeaseLost",
    "LeaseTaken",
    "LeaseUnavailable",
    "Member",
    "Membership",
    "NotHeld",
    "RenewResult",
    "RequestRejected",
    "Transfer",
]
