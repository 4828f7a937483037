"""quiet_port picks ports that no outgoing connection can take before the server binds them."""

from __future__ import annotations

import collections
import secrets
import socket
from pathlib import Path

import pytest

from marquee_localservers import SeaweedServer, process, quiet_port


def first_ephemeral() -> int:
    return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])


def test_a_quiet_port_is_below_the_ephemeral_range_and_free() -> None:
    ports = {quiet_port() for _ in range(20)}
    assert all(10_000 <= port < first_ephemeral() for port in ports)
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # free right after the pick


def test_an_outgoing_connection_never_takes_a_quiet_port() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        clients = [socket.create_connection(server.getsockname()) for _ in range(50)]
        try:
            sources = {client.getsockname()[1] for client in clients}
        finally:
            for client in clients:
                client.close()
    assert min(sources) >= first_ephemeral()


def test_a_taken_port_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    free = quiet_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", quiet_port()))
        taken = holder.getsockname()[1]
        monkeypatch.setattr(process, "_handed_out", collections.deque())  # forget both
        picks = iter([taken - 10_000, free - 10_000])
        monkeypatch.setattr(secrets, "randbelow", lambda _span: next(picks))
        assert quiet_port() == free


def test_a_port_handed_out_is_not_handed_out_again(monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = quiet_port(), quiet_port()  # free: only their caller would bind them
    monkeypatch.setattr(process, "_handed_out", collections.deque([first]))
    picks = iter([first - 10_000, second - 10_000])
    monkeypatch.setattr(secrets, "randbelow", lambda _span: next(picks))
    assert quiet_port() == second


def test_quiet_ports_are_distinct_and_avoid_the_ones_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    picks = iter([10_001, 10_001, 10_002, 10_003, 10_002, 10_004])  # repeating on purpose
    monkeypatch.setattr(process, "quiet_port", lambda host="127.0.0.1": next(picks))
    assert process.quiet_ports(3, besides=[10_003]) == [10_001, 10_002, 10_004]


def test_without_room_below_the_range_it_falls_back_to_any_free_port(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    narrow = tmp_path / "range"
    narrow.write_text("10200\t60999\n")
    monkeypatch.setattr(process, "_EPHEMERAL_RANGE", narrow)
    assert quiet_port() >= first_ephemeral()  # the kernel's pick


def test_seaweedfs_listens_only_on_quiet_ports(tmp_path: Path) -> None:
    server = SeaweedServer(tmp_path)
    ports = [server.port, *server._ports.values()]
    assert all(port < first_ephemeral() for port in ports)
    assert len(set(ports)) == len(ports)
