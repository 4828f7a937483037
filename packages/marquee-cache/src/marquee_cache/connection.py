"""A raw, pipelined RESP3 connection whose reader also receives server pushes.

Why not redis-py's asyncio Connection: redis-py only looks at push frames while
some caller is inside `read_response`, so an idle connection leaves invalidations
unread in the socket; it has no notion of one reader serving many pipelined
callers; and its transparent reconnect would come back without CLIENT TRACKING,
silently. Here the connection is an asyncio `Protocol`: replies complete the
oldest pending future (Redis answers in order), push frames go to `on_push`, and
any failure fails every pending call and fires `on_lost` exactly once,
synchronously, before another task can run. hiredis (the parser redis-py itself
uses) does the RESP3 parsing.

Why a Protocol and not a reader task on a StreamReader: frames are parsed in
the event loop's I/O callback itself (`data_received`). A reader task is woken
by that callback through a future, i.e. one whole pass of the loop's ready queue
later; under saturation that pass is what made invalidations lag (issue 9). And
`drain()` can read what the kernel already holds, synchronously, so a caller
about to rely on "no invalidation has arrived" can make it true first.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, cast

import hiredis

_NOT_ENOUGH = object()
_READ_SIZE = 1 << 16

PushHandler = Callable[[list[Any]], None]
LostHandler = Callable[[BaseException | None], None]


class ConnectionLost(ConnectionError):
    pass


class RespConnection(asyncio.Protocol):
    def __init__(self, sock: socket.socket, on_push: PushHandler, on_lost: LostHandler) -> None:
        self._sock = sock
        self._on_push = on_push
        self._on_lost = on_lost
        self._parser = hiredis.Reader(notEnoughData=_NOT_ENOUGH)
        self._pending: deque[asyncio.Future[Any]] = deque()
        self._lost: BaseException | None = None
        self._transport: asyncio.Transport | None = None
        self.closed = asyncio.Event()
        self._gone = asyncio.get_running_loop().create_future()
        """Done once the transport has let go of the socket (connection_lost)."""

    @classmethod
    async def open(
        cls, host: str, port: int, on_push: PushHandler, on_lost: LostHandler
    ) -> RespConnection:
        loop = asyncio.get_running_loop()
        error: OSError = ConnectionLost(f"{host}:{port} did not resolve")
        for family, kind, proto, _, address in await _resolve(loop, host, port):
            # Our own socket object, handed to the transport: `drain` reads from it.
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                await loop.sock_connect(sock, address)
                conn = cls(sock, on_push, on_lost)
                await loop.create_connection(lambda c=conn: c, sock=sock)  # type: ignore[misc]
                return conn
            except OSError as exc:  # e.g. ::1 refused while 127.0.0.1 listens
                sock.close()
                error = exc
            except BaseException:
                sock.close()
                raise
        raise error

    # -- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._lost is not None:
            return
        try:
            self._parser.feed(data)
            while (frame := self._parser.gets()) is not _NOT_ENOUGH:
                if isinstance(frame, hiredis.PushNotification):
                    self._on_push(frame)
                elif self._pending:
                    future = self._pending.popleft()
                    if not future.done():  # its caller may have timed out
                        future.set_result(frame)
        except Exception as exc:  # a protocol error ends the connection; callers see it
            self.close(exc)

    def eof_received(self) -> bool:
        self.close(ConnectionLost("server closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.close(exc or ConnectionLost("connection closed"))
        if not self._gone.done():
            self._gone.set_result(None)

    # -- calls --------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return not self.closed.is_set()

    def send(self, *commands: tuple[str | bytes | int, ...]) -> list[asyncio.Future[Any]]:
        """Pipeline the commands in one write; one future per reply, in order.

        Callers bound the wait themselves (asyncio.timeout); a future they abandon
        still takes its reply off the stream.
        """
        if self._lost is not None or self._transport is None:
            raise ConnectionLost("tracking connection is closed") from self._lost
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in commands]
        self._pending.extend(futures)
        # cast: hiredis' stub types the argument as a 1-tuple.
        packed = (hiredis.pack_command(cast(Any, c)) for c in commands)
        self._transport.write(b"".join(packed))
        return futures

    async def call(self, *command: str | bytes | int) -> Any:
        (future,) = self.send(command)
        reply = await future
        if isinstance(reply, hiredis.ReplyError):
            raise reply
        return reply

    def drain(self) -> None:
        """Process, now, whatever the kernel has already received for us.

        Synchronous: pushes that arrived before this call are applied before it
        returns, even when the loop has not polled the socket yet (a busy loop).
        The transport later finds the socket empty, which it handles.
        """
        while self._lost is None:
            try:
                data = self._sock.recv(_READ_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.close(exc)
                return
            if not data:
                self.close(ConnectionLost("server closed the connection"))
                return
            self.data_received(data)
            if len(data) < _READ_SIZE:
                return

    def close(self, reason: BaseException | None = None) -> None:
        """Idempotent; fails pending calls and reports the loss once."""
        if self._lost is not None:
            return
        self._lost = reason or ConnectionLost("closed")
        if self._transport is not None:
            self._transport.close()
        elif not self._gone.done():
            self._sock.close()
            self._gone.set_result(None)
        for future in self._pending:
            if not future.done():
                future.set_exception(ConnectionLost(str(self._lost)))
        self._pending.clear()
        self.closed.set()
        self._on_lost(reason)

    async def wait_closed(self) -> None:
        self.close()
        # wait(), not `await future` under suppress(CancelledError): that would also
        # swallow a cancel aimed at the caller, whose loop would then never stop.
        await asyncio.wait([self._gone])


AddrInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, Any]


async def _resolve(loop: asyncio.AbstractEventLoop, host: str, port: int) -> Sequence[AddrInfo]:
    """An IP literal is used as is; only a name goes to getaddrinfo, which asyncio
    runs in a worker thread: a reconnect loop against a dead node tries every
    25 ms, and each try would otherwise cost a thread hop (as open_connection
    avoids for literals too)."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port))]
    return await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
