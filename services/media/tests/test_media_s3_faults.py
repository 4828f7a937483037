"""Large uploads in bounded memory, and S3 that is dead, stalling or cut off mid-upload."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator

import boto3  # type: ignore[import-untyped]
import grpc
import psutil
import pytest
from conftest import SettingsFactory
from joserfc.jwk import OKPKey
from media_support import Client, sign

from marquee.media.v1 import media_pb2
from marquee_media.app import register
from marquee_testing.fixtures.seaweedfs import S3Endpoint
from marquee_testing.inprocess import serving

MIB = 1024 * 1024


class PeakRss:
    """Samples this process's RSS every few ms in a thread; `growth` is peak minus start."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self.start = self._process.memory_info().rss
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak - self.start


async def test_large_upload_and_download_keep_memory_bounded(
    media_settings: SettingsFactory, signing_key: OKPKey
) -> None:
    # 256 MiB through a service whose part size is 5 MiB with 2 parts in flight:
    # the setting bounds an upload at 3 parts, 15 MiB. Client and server share
    # this process, so the measured growth also holds the client's chunks, gRPC's
    # flow-control windows and botocore's signing copies; 96 MiB is a generous
    # functional bound on a loaded machine, and still far below the object: a
    # buffered upload (the replaced system's fault) would grow by all 256 MiB.
    total, chunk = 256 * MIB, os.urandom(MIB)
    expected = hashlib.sha256()
    for _ in range(total // MIB):
        expected.update(chunk)
    settings = media_settings(upload_part_bytes=5 * MIB, upload_concurrency=2)
    async with serving("media", settings, register) as media:
        client = Client(media.channel, sign(signing_key, "alice"))

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(total // MIB):
                yield chunk

        rss = PeakRss()
        info = await client.put("big/object", chunks(), timeout=110)
        upload_growth = rss.stop()
        assert info.size == total
        assert info.sha256 == expected.hexdigest()

        rss = PeakRss()
        received = hashlib.sha256()
        call = client.stub.Download(
            media_pb2.DownloadRequest(key="big/object"), metadata=client.metadata, timeout=110
        )
        async for message in call:
            if message.WhichOneof("part") == "chunk":
                received.update(message.chunk)
        download_growth = rss.stop()
        assert received.hexdigest() == expected.hexdigest()
        header, tail = await client.get("big/object", total - MIB - 3, 5)
        assert tail == (chunk[-3:] + chunk[:2])
        assert header.length == 5
    assert upload_growth < 96 * MIB, f"upload grew RSS by {upload_growth / MIB:.1f} MiB"
    assert download_growth < 96 * MIB, f"download grew RSS by {download_growth / MIB:.1f} MiB"


@pytest.fixture
def stalling_endpoint() -> Iterator[str]:
    """An HTTP endpoint that accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not done.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    done.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def dead_endpoint() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"  # nobody listens once closed


@pytest.mark.parametrize("backend", ["s3"], indirect=True)
@pytest.mark.parametrize("kind", ["dead", "stalling"])
async def test_unreachable_s3_is_unavailable_within_a_bound(
    media_settings: SettingsFactory, signing_key: OKPKey, kind: str, request: pytest.FixtureRequest
) -> None:
    endpoint = dead_endpoint() if kind == "dead" else request.getfixturevalue("stalling_endpoint")
    settings = media_settings(s3_endpoint=endpoint, s3_timeout=0.5)
    async with serving("media", settings, register) as media:
        client = Client(media.channel, sign(signing_key, "alice"))
        for call in (
            lambda: client.stub.Stat(media_pb2.StatRequest(key="k"), metadata=client.metadata),
            lambda: client.put("k", [b"x" * 100]),
            lambda: client.get("k"),
        ):
            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call()
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value.details()
            # Bounded: timeout x attempts, with room for a loaded machine.
            assert time.monotonic() - started < 15


@pytest.mark.parametrize("backend", ["s3"], indirect=True)
async def test_a_cancelled_upload_leaves_nothing_on_s3(
    media_settings: SettingsFactory, signing_key: OKPKey, seaweedfs_server: S3Endpoint
) -> None:
    settings = media_settings(upload_part_bytes=5 * MIB)
    s3 = boto3.client(
        "s3",
        endpoint_url=seaweedfs_server.url,
        aws_access_key_id=seaweedfs_server.access_key,
        aws_secret_access_key=seaweedfs_server.secret_key,
        region_name=seaweedfs_server.region,
    )
    async with serving("media", settings, register) as media:
        client = Client(media.channel, sign(signing_key, "alice"))
        parts_sent = asyncio.Event()

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(12):  # two full parts reach S3
                yield os.urandom(MIB)
                if i == 11:
                    parts_sent.set()
            await asyncio.Event().wait()  # then the client stalls until cancelled

        upload = asyncio.ensure_future(client.put("cut/object", chunks()))

        def in_progress() -> int:
            answer = s3.list_multipart_uploads(Bucket=settings.s3_bucket)
            return len(answer.get("Uploads", []))

        await asyncio.wait_for(parts_sent.wait(), 30)
        deadline = time.monotonic() + 30
        while await asyncio.to_thread(in_progress) == 0:
            assert time.monotonic() < deadline, "the multipart upload never started"
            await asyncio.sleep(0.05)
        upload.cancel()
        with pytest.raises(asyncio.CancelledError):
            await upload
        deadline = time.monotonic() + 30
        while await asyncio.to_thread(in_progress) != 0:
            assert time.monotonic() < deadline, "the multipart upload was not aborted"
            await asyncio.sleep(0.05)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.get("cut/object")
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
