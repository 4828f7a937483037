"""The write-ahead log of one collection generation: what was acknowledged but not yet committed.

An Index or Delete call appends one record and fsyncs it before it answers;
tantivy commits later (on size, when idle, before a read, at shutdown), and the
log is emptied after each commit. On open, the records left are applied again.

A record is `length (u32 LE) | crc32 (u32 LE) | payload`. A record cut short
by a crash (a short header or payload, or a checksum that does not match) can
only be the last one, since every append is fsynced before the next starts:
it was never acknowledged, so it is dropped and the file truncated to the
records before it.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

HEADER = struct.Struct("<II")


class WriteAheadLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        created = not path.exists()
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        if created:
            # The name must survive a crash as well as the bytes appended under it.
            directory = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        self.size = os.fstat(self._fd).st_size

    def records(self) -> list[bytes]:
        """Every complete record, oldest first; a torn tail is cut off the file."""
        with open(self._fd, "rb", closefd=False) as f:
            f.seek(0)
            data = f.read()
        payloads = []
        offset = 0
        while offset + HEADER.size <= len(data):
            length, crc = HEADER.unpack_from(data, offset)
            start = offset + HEADER.size
            payload = data[start : start + length]
            if len(payload) != length or zlib.crc32(payload) != crc:
                break
            payloads.append(payload)
            offset = start + length
        if offset != len(data):
            self.truncate(offset)
        return payloads

    def append(self, payload: bytes) -> None:
        """Write and fsync one record; on failure the file is as it was before."""
        record = HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        view = memoryview(record)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            os.fdatasync(self._fd)
        except BaseException:
            # A partial record must not sit in front of the next acknowledged one.
            self.truncate(self.size)
            raise
        self.size += len(record)

    def truncate(self, size: int) -> None:
        os.ftruncate(self._fd, size)
        os.fsync(self._fd)
        self.size = size

    def reset(self) -> None:
        """Empty the log: everything in it is committed."""
        if self.size:
            self.truncate(0)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
