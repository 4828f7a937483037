"""The coordinator: a Raft cluster granting leases with fencing tokens.

pysyncobj's bundled `win_inet_pton` replaces `socket.inet_ntop` with a
Windows-only ctypes version on every platform (a mis-indented line), which
breaks anything else in the process that formats addresses (psutil, for one).
Importing it here, first, lets us put the real function back before any
other module of this package, or a test, can observe the damage.
"""

import socket as _socket

_inet_ntop = _socket.inet_ntop
import pysyncobj.tcp_connection  # noqa: E402, F401

_socket.inet_ntop = _inet_ntop
