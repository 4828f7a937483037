"""Media next to its peers (issue 12, item 9), against one private SeaweedFS S3.

(a) Upload and download MB/s and peak RSS growth: MediaService.Upload/Download
    (gRPC client stream into S3 multipart, part by part) against aioboto3's
    upload_fileobj/download_fileobj of the same file to the same S3.
(b) Transcode: time to the first segment and real-time factor (source seconds
    per wall second) of StartTranscode (copy of the source out of storage, probe,
    ffmpeg) against the very ffmpeg command line the service builds, run by hand
    on a local file.
(c) Thumbnails/s: MediaService.Thumbnail (inline, so every call renders) of a
    4000x3000 JPEG against raw pyvips.Image.thumbnail_buffer with as many
    threads as the service renders at once.

Client and server share this process (uvloop); the RSS growth is this process's
peak RSS during the operation minus its RSS before it, sampled every 5 ms.
Rows are medians over BENCH_ROUNDS rounds, paired and alternated.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aioboto3  # type: ignore[import-untyped]
import grpc
import psutil
import pyvips  # type: ignore[import-untyped]
import uvloop
from joserfc import jwt
from joserfc.jwk import KeySet, OKPKey

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import LoadLog, Row, from_runs, print_results
from marquee.auth.v1 import auth_pb2, auth_pb2_grpc
from marquee.media.v1 import media_pb2, media_pb2_grpc
from marquee_authn import ACCESS_TOKEN_ALGORITHM
from marquee_localservers import SeaweedServer, find_ffmpeg
from marquee_media.app import register
from marquee_media.settings import MediaSettings
from marquee_media.transcode import plan
from marquee_media.transcode.probe import probe
from marquee_testing.inprocess import serving

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
OBJECT_MB = int(os.environ.get("BENCH_MEDIA_MB", "64"))
CLIP_SECONDS = int(os.environ.get("BENCH_MEDIA_CLIP_S", "20"))
THUMBNAILS = int(os.environ.get("BENCH_MEDIA_THUMBNAILS", "20"))
MIB = 1024 * 1024
BUCKET = "bench-media"


class PeakRss:
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

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return (self.peak - self.start) / MIB


async def timed(action: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """(seconds, peak RSS growth in MiB) of one action."""
    rss = PeakRss()
    started = time.perf_counter()
    await action()
    return time.perf_counter() - started, rss.stop()


def make_clip(ffmpeg: str, path: Path) -> None:
    subprocess.run(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
         "-t", str(CLIP_SECONDS), "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
         "-g", "60", "-c:a", "aac", "-shortest", str(path)],
        check=True, timeout=600,
    )  # fmt: skip


class Bench:
    def __init__(self, work: Path, s3: SeaweedServer, ffmpeg: str, ffprobe: str) -> None:
        self.work = work
        self.s3 = s3
        self.ffmpeg = ffmpeg
        self.ffprobe = ffprobe
        self.key = OKPKey.generate_key(
            "Ed25519", parameters={"kid": "bench", "alg": ACCESS_TOKEN_ALGORITHM}, private=True
        )
        now = int(time.time())
        claims = {"iss": "marquee-auth", "sub": "bench", "sid": "b", "typ": "access",
                  "iat": now, "exp": now + 7200}  # fmt: skip
        token = jwt.encode({"alg": ACCESS_TOKEN_ALGORITHM, "kid": "bench"}, claims, self.key,
                           algorithms=[ACCESS_TOKEN_ALGORITHM])  # fmt: skip
        self.metadata = (("authorization", f"Bearer {token}"),)
        self.object_path = work / "object.bin"
        with self.object_path.open("wb") as out:
            for _ in range(OBJECT_MB):
                out.write(os.urandom(MIB))
        self.session = aioboto3.Session(
            aws_access_key_id=s3.access_key, aws_secret_access_key=s3.secret_key,
            region_name=s3.region,
        )  # fmt: skip

    def settings(self) -> MediaSettings:
        return MediaSettings(
            grpc_port=0, metrics_port=-1, storage="s3", s3_endpoint=self.s3.url,
            s3_access_key=self.s3.access_key, s3_secret_key=self.s3.secret_key,  # type: ignore[arg-type]
            s3_bucket=BUCKET, storage_dir=self.work / "media", libvips_shutdown=False,
            ffmpeg=self.ffmpeg, ffprobe=self.ffprobe, segment_wait=30,
        )  # fmt: skip


async def main() -> None:
    ffmpeg, ffprobe = find_ffmpeg()
    load = LoadLog()
    with tempfile.TemporaryDirectory(prefix="bench-media-") as tmp:
        work = Path(tmp)
        s3 = SeaweedServer(work / "seaweedfs")
        s3.start(timeout=60)
        try:
            bench = Bench(work, s3, ffmpeg, ffprobe)
            rows = await run_all(bench, load)
        finally:
            s3.stop()
    print_results(
        "media",
        "aioboto3 / ffmpeg by hand / raw pyvips",
        rows,
        {"object_mb": OBJECT_MB, "clip_seconds": CLIP_SECONDS, "rounds": ROUNDS},
        load=load,
    )


class JwksOnlyAuth(auth_pb2_grpc.AuthServiceServicer):
    """The one auth RPC media calls: the keys that verify the bench's token."""

    def __init__(self, key: OKPKey) -> None:
        public = OKPKey.import_key(key.as_dict(private=False))
        self._jwks = json.dumps(KeySet([public]).as_dict())

    async def GetJwks(self, request: Any, context: Any) -> auth_pb2.GetJwksResponse:
        return auth_pb2.GetJwksResponse(jwks_json=self._jwks)


async def run_all(bench: Bench, load: LoadLog) -> list[Row]:
    auth = grpc.aio.server()
    auth_pb2_grpc.add_AuthServiceServicer_to_server(JwksOnlyAuth(bench.key), auth)  # type: ignore[abstract]
    port = auth.add_insecure_port("127.0.0.1:0")
    await auth.start()
    settings = bench.settings().model_copy(update={"auth_address": f"127.0.0.1:{port}"})
    try:
        async with serving("media", settings, register) as media:
            stub = media_pb2_grpc.MediaServiceStub(media.channel)
            rows = await storage_rows(bench, stub, load)
            rows += await transcode_rows(bench, stub, load)
            rows += await thumbnail_rows(bench, stub, load)
    finally:
        await auth.stop(None)
    return rows


async def storage_rows(bench: Bench, stub: Any, load: LoadLog) -> list[Row]:
    mb = OBJECT_MB * MIB / 1e6
    up: dict[str, list[float]] = {"m": [], "p": [], "m_rss": [], "p_rss": []}
    down: dict[str, list[float]] = {"m": [], "p": [], "m_rss": [], "p_rss": []}

    async def chunks() -> AsyncIterator[media_pb2.UploadRequest]:
        yield media_pb2.UploadRequest(
            header=media_pb2.UploadHeader(key="bench/object", overwrite=True)
        )
        with bench.object_path.open("rb") as source:
            while chunk := source.read(MIB):
                yield media_pb2.UploadRequest(chunk=chunk)

    async def marquee_up() -> None:
        await stub.Upload(chunks(), metadata=bench.metadata, timeout=600)

    async def marquee_down() -> None:
        call = stub.Download(
            media_pb2.DownloadRequest(key="bench/object"), metadata=bench.metadata, timeout=600
        )
        async for _ in call:
            pass

    class Null:
        def write(self, data: bytes) -> int:
            return len(data)

    async def peer_up() -> None:
        async with bench.session.client("s3", endpoint_url=bench.s3.url) as s3:
            with bench.object_path.open("rb") as source:
                await s3.upload_fileobj(source, BUCKET, "bench/peer")

    async def peer_down() -> None:
        async with bench.session.client("s3", endpoint_url=bench.s3.url) as s3:
            await s3.download_fileobj(BUCKET, "bench/peer", Null())

    for i in range(ROUNDS):
        load.sample()
        order = [("m", marquee_up, marquee_down), ("p", peer_up, peer_down)]
        for side, upload, download in order if i % 2 == 0 else order[::-1]:
            seconds, rss = await timed(upload)
            up[side].append(mb / seconds)
            up[f"{side}_rss"].append(rss)
            seconds, rss = await timed(download)
            down[side].append(mb / seconds)
            down[f"{side}_rss"].append(rss)
    return [
        from_runs(f"upload {OBJECT_MB} MiB", up["m"], up["p"], "MB/s"),
        from_runs("upload peak RSS growth", up["m_rss"], up["p_rss"], "MiB"),
        from_runs(f"download {OBJECT_MB} MiB", down["m"], down["p"], "MB/s"),
        from_runs("download peak RSS growth", down["m_rss"], down["p_rss"], "MiB"),
    ]


async def transcode_rows(bench: Bench, stub: Any, load: LoadLog) -> list[Row]:
    clip = bench.work / "clip.mp4"
    make_clip(bench.ffmpeg, clip)
    data = clip.read_bytes()

    async def clip_chunks() -> AsyncIterator[media_pb2.UploadRequest]:
        yield media_pb2.UploadRequest(header=media_pb2.UploadHeader(key="bench/clip.mp4",
                                                                   overwrite=True))  # fmt: skip
        for i in range(0, len(data), MIB):
            yield media_pb2.UploadRequest(chunk=data[i : i + MIB])

    await stub.Upload(clip_chunks(), metadata=bench.metadata, timeout=600)
    source = await probe(bench.ffprobe, clip)
    request = media_pb2.StartTranscodeRequest(source_key="bench/clip.mp4")
    variants = plan.variants(request, source)
    first = f"{variants[-1].name}/seg_00000.ts"

    async def marquee() -> tuple[float, float]:
        started = time.perf_counter()
        answer = await stub.StartTranscode(request, metadata=bench.metadata, timeout=600)
        sid = answer.session.session_id
        call = stub.GetSegment(media_pb2.GetSegmentRequest(session_id=sid, name=first),
                               metadata=bench.metadata, timeout=600)  # fmt: skip
        async for _ in call:
            pass
        first_at = time.perf_counter() - started
        while True:
            state = await stub.GetTranscode(media_pb2.GetTranscodeRequest(session_id=sid),
                                            metadata=bench.metadata)  # fmt: skip
            if state.session.state != media_pb2.TRANSCODE_STATE_RUNNING:
                break
            await asyncio.sleep(0.02)
        total = time.perf_counter() - started
        await stub.StopTranscode(media_pb2.StopTranscodeRequest(session_id=sid),
                                 metadata=bench.metadata)  # fmt: skip
        return first_at, total

    async def by_hand(round_no: int) -> tuple[float, float]:
        out = bench.work / f"hand-{round_no}"
        for v in variants:
            (out / v.name).mkdir(parents=True)
        argv = plan.ffmpeg_argv(bench.ffmpeg, out / "progress.txt", clip, out, variants, source,
                                6.0)  # fmt: skip
        started = time.perf_counter()
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        first_file = out / first
        first_at = None
        while process.poll() is None:
            if first_at is None and first_file.exists():
                first_at = time.perf_counter() - started
            await asyncio.sleep(0.02)
        total = time.perf_counter() - started
        return first_at if first_at is not None else total, total

    m_first, p_first, m_rtf, p_rtf = [], [], [], []
    for i in range(ROUNDS):
        load.sample()
        sides = ["m", "p"] if i % 2 == 0 else ["p", "m"]
        for side in sides:
            if side == "m":
                first_at, total = await marquee()
                m_first.append(first_at)
                m_rtf.append(CLIP_SECONDS / total)
            else:
                first_at, total = await by_hand(i)
                p_first.append(first_at)
                p_rtf.append(CLIP_SECONDS / total)
    names = "+".join(v.name for v in variants)
    return [
        from_runs(f"time to first segment ({names})", m_first, p_first, "s"),
        from_runs(f"real-time factor ({CLIP_SECONDS} s 720p)", m_rtf, p_rtf, "x"),
    ]


async def thumbnail_rows(bench: Bench, stub: Any, load: LoadLog) -> list[Row]:
    photo = bytes(
        pyvips.Image.gaussnoise(4000, 3000)
        .cast("uchar")
        .bandjoin([128, 64])
        .write_to_buffer(".jpg[Q=85]")
    )
    await stub.Upload(iter_upload("bench/photo.jpg", photo), metadata=bench.metadata, timeout=600)
    concurrency = bench.settings().thumbnail_concurrency

    async def marquee() -> float:
        request = media_pb2.ThumbnailRequest(key="bench/photo.jpg", width=256, inline=True)
        semaphore = asyncio.Semaphore(concurrency * 2)

        async def one() -> None:
            async with semaphore:
                await stub.Thumbnail(request, metadata=bench.metadata, timeout=600)

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(THUMBNAILS)))
        return THUMBNAILS / (time.perf_counter() - started)

    async def raw() -> float:
        def work(n: int) -> None:
            for _ in range(n):
                image = pyvips.Image.thumbnail_buffer(photo, 256, height=10_000_000)
                image.write_to_buffer(".jpg[Q=80]")

        started = time.perf_counter()
        share = [THUMBNAILS // concurrency + (1 if i < THUMBNAILS % concurrency else 0)
                 for i in range(concurrency)]  # fmt: skip
        await asyncio.gather(*(asyncio.to_thread(work, n) for n in share))
        return THUMBNAILS / (time.perf_counter() - started)

    m_runs, p_runs = [], []
    for i in range(ROUNDS):
        load.sample()
        if i % 2 == 0:
            m_runs.append(await marquee())
            p_runs.append(await raw())
        else:
            p_runs.append(await raw())
            m_runs.append(await marquee())
    return [from_runs("thumbnails 4000x3000 -> 256 wide", m_runs, p_runs, "/s")]


async def iter_upload(key: str, data: bytes) -> AsyncIterator[media_pb2.UploadRequest]:
    yield media_pb2.UploadRequest(header=media_pb2.UploadHeader(key=key, overwrite=True))
    for i in range(0, len(data), MIB):
        yield media_pb2.UploadRequest(chunk=data[i : i + MIB])


if __name__ == "__main__":
    uvloop.run(main())
