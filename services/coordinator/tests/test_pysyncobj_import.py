import socket

import marquee_coordinator  # noqa: F401


def test_importing_the_coordinator_keeps_socket_inet_ntop_working() -> None:
    assert socket.inet_ntop(socket.AF_INET, bytes([127, 0, 0, 1])) == "127.0.0.1"
    assert socket.inet_ntop(socket.AF_INET6, bytes(15) + b"\x01") == "::1"
