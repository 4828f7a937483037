"""Log compaction that does not stop the Raft heartbeat.

pysyncobj compacts its log by writing the whole replicated state to its full
dump, every `compaction_min_entries` entries. Without fork() (unsafe under a
gRPC server, raft_config.py) it writes it on the tick thread, the thread that
also sends the heartbeats: pickling and gzip-compressing (level 9) took 254 ms
for 20,000 leases on a quiet core, so about a second at 75,000. Every member
compacts at about the same entry, so the followers timed out and elected, and
the new leader stalled in its turn: four elections within 1.5 s
(docs/benchmarks.md, coordinator).

Here the tick thread only takes a copy of the state (ReplicatedLeases
._serialize, LeaseState.snapshot) and a thread of its own writes the dump. The
format is pysyncobj's (a gzip of the pickle), so pysyncobj reads it back at
start-up and sends it to lagging followers unchanged; it is fsynced before it
replaces the previous one, which pysyncobj does not do. pysyncobj deletes the
compacted entries from its journal only once the writer reports success, as it
does with its fork()ed writer, whose protocol this follows.
"""

from __future__ import annotations

import gzip
import os
import threading
from pathlib import Path
from typing import Any

import structlog
from pysyncobj.config import SERIALIZER_STATE
from pysyncobj.serializer import Serializer

log = structlog.get_logger(__name__)

# Level 1 instead of gzip's default 9: a few times faster, and the dump is
# rewritten at every compaction and read only at a restart or by a lagging follower.
COMPRESS_LEVEL = 1


class BackgroundSerializer(Serializer):  # type: ignore[misc]
    """pysyncobj's Serializer, writing the full dump on a thread of its own.

    The file name is pysyncobj's full dump; reading it (deserialize) and
    sending it to followers (getTransmissionData) are pysyncobj's own.
    """

    def __init__(self, file_name: str, transmission_batch_size: int) -> None:
        super().__init__(file_name, transmission_batch_size, False, None, None, None)
        self._path = Path(file_name)
        self._writer: threading.Thread | None = None
        self._written = False
        self._id: Any = None

    def serialize(self, data: Any, id: Any) -> None:
        """Start writing `data` (whose state no command changes any more) as the dump."""
        if self._writer is not None:
            return
        self._id = id
        self._written = False
        # Nonzero: what pysyncobj's own code reads as "a dump is being written", so
        # it sends no follower the dump that is about to be replaced.
        self._Serializer__pid = -3
        self._writer = threading.Thread(
            target=self._write, args=(data,), name="raft-full-dump", daemon=True
        )
        self._writer.start()

    def checkSerializing(self) -> tuple[int, Any]:
        writer = self._writer
        if writer is None:
            return SERIALIZER_STATE.NOT_SERIALIZING, None
        if writer.is_alive():
            return SERIALIZER_STATE.SERIALIZING, self._id
        self._writer = None
        self._Serializer__pid = 0
        # As after a fork()ed write: transmissions start again from the new file.
        self._Serializer__transmissions: dict[Any, Any] = {}
        return (SERIALIZER_STATE.SUCCESS if self._written else SERIALIZER_STATE.FAILED), self._id

    def setTransmissionData(self, data: Any) -> bool:
        # The last part of a dump received from the leader replaces our file and is
        # then loaded, with the journal cleared. A write of our own still running
        # would replace it in turn with an older state: it is waited for first,
        # and its result dropped (only a lagging follower gets here).
        if data is not None and data[2] and self._writer is not None:
            self._writer.join()
            self._writer = None
            self._Serializer__pid = 0
        return bool(super().setTransmissionData(data))

    def finish(self, timeout: float) -> bool:
        """Wait up to `timeout` s for a dump being written; False if it still is.

        For a node closing: another one may open the same files next, in this
        process (the lock file keeps other processes out), and two writers must
        never share the temporary file.
        """
        writer = self._writer
        if writer is not None:
            writer.join(timeout)
            return not writer.is_alive()
        return True

    def _write(self, data: Any) -> None:
        # pysyncobj's pickle module: the one its deserialize() reads with.
        from pysyncobj import pickle

        temporary = self._path.with_name(self._path.name + ".tmp")
        try:
            with temporary.open("wb") as file:
                with gzip.GzipFile(fileobj=file, mode="wb", compresslevel=COMPRESS_LEVEL) as g:
                    pickle.dump(data, g)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self._path)
            directory = os.open(self._path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
            self._written = True
        except Exception:  # a failed compaction keeps the journal: reported, retried later
            log.exception("writing the raft full dump failed", path=str(self._path))
            self._written = False
