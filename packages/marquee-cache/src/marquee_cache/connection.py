"""A raw, pipelined RESP3 connection whose reader also receives server pushes.

Why not redis-py's asyncio Connection: redis-py only looks at push frames while
some caller is inside `read_response`, so an idle connection leaves invalidations
unread in the socket; it has no notion of one reader serving many pipelined
callers; and its transparent reconnect would come back without CLIENT TRACKING,
silently. Here a single reader task owns the socket: replies complete the oldest
pending future (Redis answers in order), push frames go to `on_push`, and any
failure fails every pending call and fires `on_lost` exactly once, synchronously,
before another task can run. hiredis (the parser redis-py itself uses) does the
RESP3 parsing.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import hiredis

_NOT_ENOUGH = object()
_READ_SIZE = 1 << 16

PushHandler = Callable[[list[Any]], None]
LostHandler = Callable[[BaseException | None], None]


class ConnectionLost(ConnectionError):
    pass


class RespConnection:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_push: PushHandler,
        on_lost: LostHandler,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._on_push = on_push
        self._on_lost = on_lost
        self._parser = hiredis.Reader(notEnoughData=_NOT_ENOUGH)
        self._pending: deque[asyncio.Future[Any]] = deque()
        self._lost: BaseException | None = None
        self.closed = asyncio.Event()
        self._read_task = asyncio.create_task(self._read_loop(), name="marquee-cache-resp-reader")

    @classmethod
    async def open(
        cls, host: str, port: int, on_push: PushHandler, on_lost: LostHandler
    ) -> RespConnection:
        reader, writer = await asyncio.open_connection(host, port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return cls(reader, writer, on_push, on_lost)

    @property
    def is_open(self) -> bool:
        return not self.closed.is_set()

    def send(self, *commands: tuple[str | bytes | int, ...]) -> list[asyncio.Future[Any]]:
        """Pipeline the commands in one write; one future per reply, in order.

        Callers bound the wait themselves (asyncio.timeout); a future they abandon
        still takes its reply off the stream.
        """
        if self._lost is not None:
            raise ConnectionLost("tracking connection is closed") from self._lost
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in commands]
        self._pending.extend(futures)
        # cast: hiredis' stub types the argument as a 1-tuple.
        packed = (hiredis.pack_command(cast(Any, c)) for c in commands)
        self._writer.write(b"".join(packed))
        return futures

    async def call(self, *command: str | bytes | int) -> Any:
        (future,) = self.send(command)
        reply = await future
        if isinstance(reply, hiredis.ReplyError):
            raise reply
        return reply

    def close(self, reason: BaseException | None = None) -> None:
        """Idempotent; fails pending calls and reports the loss once."""
        if self._lost is not None:
            return
        self._lost = reason or ConnectionLost("closed")
        self._writer.close()
        for future in self._pending:
            if not future.done():
                future.set_exception(ConnectionLost(str(self._lost)))
        self._pending.clear()
        self.closed.set()
        if self._read_task is not asyncio.current_task():
            self._read_task.cancel()
        self._on_lost(reason)

    async def wait_closed(self) -> None:
        self.close()
        # wait(), not `await task` under suppress(CancelledError): that would also
        # swallow a cancel aimed at the caller, whose loop would then never stop.
        await asyncio.wait([self._read_task])

    async def _read_loop(self) -> None:
        parser, pending, on_push = self._parser, self._pending, self._on_push
        try:
            while True:
                data = await self._reader.read(_READ_SIZE)
                if not data:
                    raise ConnectionLost("server closed the connection")
                parser.feed(data)
                while (frame := parser.gets()) is not _NOT_ENOUGH:
                    if isinstance(frame, hiredis.PushNotification):
                        on_push(frame)
                    elif pending:
                        future = pending.popleft()
                        if not future.done():  # its caller may have timed out
                            future.set_result(frame)
        except asyncio.CancelledError:
            self.close()
            raise
        except Exception as exc:  # any failure ends the connection; callers see it
            self.close(exc)
