"""serve() in the test's event loop, and a handle on the running server.

Kept out of conftest.py so test modules can import it by a name no other
package's tests use (pytest puts every tests folder on sys.path).
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc.aio
from platform_echo_service import SERVICE, EchoSettings
from prometheus_client.parser import text_string_to_metric_families

from marquee_platform import Registrar, ServerInfo, serve


@dataclass
class Running:
    info: ServerInfo
    channel: grpc.aio.Channel
    stop: asyncio.Event
    force_stop: asyncio.Event
    task: asyncio.Task[None]

    # The echo service speaks raw bytes, so no (de)serializers.
    def unary(self, method: str) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
        return self.channel.unary_unary(f"/{SERVICE}/{method}")

    def unary_stream(self, method: str) -> grpc.aio.UnaryStreamMultiCallable[bytes, bytes]:
        return self.channel.unary_stream(f"/{SERVICE}/{method}")

    def stream_unary(self, method: str) -> grpc.aio.StreamUnaryMultiCallable[bytes, bytes]:
        return self.channel.stream_unary(f"/{SERVICE}/{method}")

    def stream_stream(self, method: str) -> grpc.aio.StreamStreamMultiCallable[bytes, bytes]:
        return self.channel.stream_stream(f"/{SERVICE}/{method}")


@asynccontextmanager
async def serving(
    register: Registrar, settings: EchoSettings | None = None
) -> AsyncIterator[Running]:
    """serve() in this event loop on free ports; stopped (and awaited) on exit."""
    stop, force_stop = asyncio.Event(), asyncio.Event()
    started: asyncio.Future[ServerInfo] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(
            "echo",
            settings or EchoSettings(),
            register,
            started=started.set_result,
            stop=stop,
            force_stop=force_stop,
        )
    )
    first_done: list[asyncio.Future[Any]] = [task, started]
    await asyncio.wait(first_done, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # raises why serve() failed to start
    info = started.result()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{info.grpc_port}") as channel:
        try:
            yield Running(info, channel, stop, force_stop, task)
        finally:
            stop.set()
            await task


async def scrape(running: Running) -> str:
    """GET /metrics, as Prometheus would."""
    url = f"http://127.0.0.1:{running.info.metrics_port}/metrics"

    def get() -> str:
        with urllib.request.urlopen(url, timeout=5) as response:
            body: bytes = response.read()
            return body.decode()

    return await asyncio.to_thread(get)


def handled_total(text: str, method: str, code: str) -> float:
    """marquee_grpc_server_handled_total of `method` ("/pkg.Service/Method") ending in `code`."""
    service, _, name = method.lstrip("/").partition("/")
    labels = {"grpc_service": service, "grpc_method": name, "grpc_code": code}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "marquee_grpc_server_handled_total" and sample.labels == labels:
                return sample.value
    return 0.0
