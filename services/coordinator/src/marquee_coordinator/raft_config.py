"""What a Raft node needs to start, derived from CoordinatorSettings, and its pysyncobj options."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pysyncobj import SyncObjConf

from marquee_coordinator.errors import InsecureConfiguration

if TYPE_CHECKING:
    # Only for the annotation: importing settings pulls in the whole platform
    # (gRPC, OpenTelemetry), which bare test nodes should not pay for at start.
    from marquee_coordinator.settings import CoordinatorSettings


def check_address(value: str) -> str:
    """`value` if it is host:port with a valid port, else ValueError."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not a host:port address")
    return value


@dataclass(frozen=True, slots=True)
class RaftTiming:
    """Raft timeouts in seconds. Defaults are pysyncobj's, except as noted."""

    heartbeat: float = 0.1  # appendEntriesPeriod
    election_min: float = 0.4  # raftMinTimeout; must exceed 3 heartbeats
    # raftMaxTimeout; pysyncobj's 1.4 s. A narrower window elects sooner after a
    # crash (the first of the survivors to time out wins) while 0.6 s of spread
    # still keeps two survivors from campaigning within one vote round trip of
    # each other (a split vote) nearly always. Timing affects availability only:
    # see docs/coordinator-timing.md.
    election_max: float = 1.0
    connection_timeout: float = 3.5  # >= election_max
    connection_retry: float = 1.0  # pysyncobj's 5 s makes a restarted peer wait for nothing
    # pysyncobj's 30 s lets an isolated old leader keep calling itself leader (and
    # keep failing every call instead of redirecting) far longer than needed.
    leader_fallback: float = 3.0
    tick: float = 0.05  # autoTickPeriod: also the granularity of expiry decisions
    # A tick later than this means the process was paused (SIGSTOP, swap, VM
    # freeze): the leader restarts its deadlines instead of trusting its clock.
    pause_threshold: float = 0.4
    compaction_min_entries: int = 5000
    compaction_min_time: float = 300.0

    @property
    def first_election_min(self) -> float:
        """A fresh node's first timeout (term 0 only, LeaseNode._shorten_first_election)."""
        return self.election_min / 2

    @property
    def first_election_max(self) -> float:
        return self.election_min

    @property
    def vote_guard(self) -> float:
        """How long after acknowledging a leader a member drops RequestVotes (leader_lease.py).

        Below election_min, so that after a crash the survivor whose timeout fires
        first is not refused by one that heard the last heartbeat a little later.
        """
        return 0.75 * self.election_min

    @property
    def min_lease_ttl(self) -> float:
        """A shorter lease would expire during an ordinary failover."""
        return 2 * self.election_max


# Short timeouts for tests and local clusters on loopback.
FAST_TIMING = RaftTiming(
    heartbeat=0.05,
    election_min=0.3,
    election_max=0.6,
    connection_timeout=0.6,
    connection_retry=0.2,
    leader_fallback=1.0,
    tick=0.02,
    pause_threshold=0.25,
)


@dataclass(frozen=True, slots=True)
class NodeConfig:
    node_id: int
    raft_address: str
    peers: tuple[str, ...]
    data_dir: Path
    cluster_secret: str | None
    # Only the dev profile may run the Raft port unauthenticated (K-9).
    allow_insecure: bool = False
    # Advertised to followers' callers as the leader's address (the gRPC one).
    client_address: str | None = None
    timing: RaftTiming = field(default_factory=RaftTiming)
    # The serving leader answers plain renewals under a leader lease, without a
    # log entry (leader_lease.py, docs/coordinator-timing.md).
    local_renewal: bool = True

    @classmethod
    def from_settings(
        cls,
        settings: CoordinatorSettings,
        *,
        client_address: str | None = None,
        timing: RaftTiming | None = None,
    ) -> NodeConfig:
        secret = settings.cluster_secret
        return cls(
            node_id=settings.node_id,
            raft_address=settings.raft_address,
            peers=tuple(p for p in settings.peers if p != settings.raft_address),
            data_dir=settings.data_dir,
            cluster_secret=secret.get_secret_value() if secret is not None else None,
            allow_insecure=settings.profile == "dev",
            client_address=client_address,
            timing=timing or RaftTiming(),
            local_renewal=settings.local_renewal,
        )

    @property
    def node_dir(self) -> Path:
        # Per node id, so several local nodes may share one data dir.
        return self.data_dir / f"node-{self.node_id}"

    @property
    def journal_file(self) -> Path:
        return self.node_dir / "raft.journal"

    @property
    def dump_file(self) -> Path:
        return self.node_dir / "raft.dump"

    @property
    def lock_file(self) -> Path:
        return self.node_dir / "LOCK"

    def check_secure(self) -> None:
        if not self.cluster_secret and not self.allow_insecure:
            raise InsecureConfiguration(
                "a cluster secret is required outside the dev profile: without it "
                "anyone who reaches the Raft port can run code on this node"
            )

    def syncobj_conf(self, **extra: Any) -> SyncObjConf:
        t = self.timing
        return SyncObjConf(
            password=self.cluster_secret or None,
            journalFile=str(self.journal_file),
            fullDumpFile=str(self.dump_file),
            # Without batching a blocking commit costs ~1 ms instead of ~100 ms.
            appendEntriesUseBatch=False,
            # Serialising in-process: fork() under a gRPC server is not safe,
            # and the lease state is small.
            useFork=False,
            # Members join and leave through the log (K-3); pysyncobj keeps the voter
            # set in its journal and full dump, so it survives restarts.
            dynamicMembershipChange=True,
            appendEntriesPeriod=t.heartbeat,
            raftMinTimeout=t.election_min,
            raftMaxTimeout=t.election_max,
            connectionTimeout=t.connection_timeout,
            connectionRetryTime=t.connection_retry,
            leaderFallbackTimeout=t.leader_fallback,
            autoTickPeriod=t.tick,
            logCompactionMinEntries=t.compaction_min_entries,
            logCompactionMinTime=t.compaction_min_time,
            # A port we cannot bind fails the start instead of retrying forever.
            maxBindRetries=20,
            bindRetryTime=0.25,
            **extra,
        )
