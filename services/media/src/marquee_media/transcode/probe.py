"""What ffprobe says about a source video."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

from marquee_media.transcode.processes import kill_group, spawn, wait_exit


class ProbeFailed(Exception):
    pass


@dataclass(frozen=True)
class SourceInfo:
    width: int
    height: int
    video_codec: str
    pixel_format: str
    audio_codec: str | None
    duration: float | None


async def probe(ffprobe: str, path: Path, limit_seconds: float = 30.0) -> SourceInfo:
    """ffprobe's view of `path`; its output goes to files beside it (no pipe to fill)."""
    argv = [ffprobe, "-v", "error", "-print_format", "json", "-show_streams", "-show_format",
            str(path)]  # fmt: skip
    out_path, err_path = path.with_suffix(".probe.json"), path.with_suffix(".probe.log")
    with out_path.open("wb") as out_file, err_path.open("wb") as err_file:
        process = spawn(argv, stdout=out_file, stderr=err_file)
    try:
        code = await asyncio.wait_for(wait_exit(process), limit_seconds)
    except BaseException:
        await kill_group(process)
        raise
    if code != 0:
        detail = err_path.read_text(errors="replace").strip().splitlines()
        raise ProbeFailed(detail[-1] if detail else f"ffprobe exited {code}")
    out = out_path.read_bytes()
    info = json.loads(out)
    streams = info.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video"), None)
    if video is None:
        raise ProbeFailed("no video stream")
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    duration = info.get("format", {}).get("duration")
    return SourceInfo(
        width=int(video.get("width", 0)),
        height=int(video.get("height", 0)),
        video_codec=str(video.get("codec_name", "")),
        pixel_format=str(video.get("pix_fmt", "")),
        audio_codec=str(audio.get("codec_name")) if audio else None,
        duration=float(duration) if duration else None,
    )
