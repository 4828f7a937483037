"""Which renditions to produce, and the ffmpeg command line that produces them as HLS."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from marquee.media.v1 import media_pb2
from marquee_media.transcode.probe import SourceInfo

PROFILES: dict[str, tuple[int, ...]] = {"default": (1080, 720, 480)}
_NAME = re.compile(r"[a-z0-9_-]{1,32}")
MASTER = "master.m3u8"
PLAYLIST = "index.m3u8"
SEGMENT_PATTERN = re.compile(r"seg_\d{5}\.ts")
_COPYABLE_VIDEO = {"h264"}
_COPYABLE_AUDIO = {"aac"}


class BadPlan(Exception):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class Variant:
    name: str
    height: int  # 0: the source's
    video_bitrate: int
    audio_bitrate: int


def variants(request: media_pb2.StartTranscodeRequest, source: SourceInfo) -> list[Variant]:
    if request.renditions:
        chosen = []
        for i, r in enumerate(request.renditions):
            field = f"renditions[{i}]"
            if not _NAME.fullmatch(r.name):
                raise BadPlan(f"{field}.name", "must match [a-z0-9_-]{1,32}")
            if not 0 <= r.height <= 4320:
                raise BadPlan(f"{field}.height", "must be 0..4320")
            if r.video_bitrate < 0 or r.audio_bitrate < 0:
                raise BadPlan(f"{field}.video_bitrate", "bitrates must not be negative")
            chosen.append(Variant(r.name, r.height, r.video_bitrate, r.audio_bitrate))
        if len({v.name for v in chosen}) != len(chosen):
            raise BadPlan("renditions", "names must be unique")
        if len(chosen) > 8:
            raise BadPlan("renditions", "at most 8")
        return chosen
    profile = request.profile or "default"
    heights = PROFILES.get(profile)
    if heights is None:
        raise BadPlan("profile", f"unknown profile; known: {', '.join(sorted(PROFILES))}")
    # No rendition larger than the source; a small source gets one at its own size.
    fitting = [h for h in heights if h <= source.height]
    if not fitting:
        return [Variant(f"{source.height}p", 0, 0, 0)]
    return [Variant(f"{h}p", 0 if h == source.height else h, 0, 0) for h in fitting]


def can_copy_video(variant: Variant, source: SourceInfo) -> bool:
    same_size = variant.height in (0, source.height)
    return (
        same_size
        and not variant.video_bitrate
        and source.video_codec in _COPYABLE_VIDEO
        and source.pixel_format in ("yuv420p", "yuvj420p")
    )


def ffmpeg_argv(
    ffmpeg: str,
    progress_path: Path,
    source_path: Path,
    out_dir: Path,
    chosen: list[Variant],
    source: SourceInfo,
    segment_seconds: float,
    *,
    realtime: bool = False,
) -> list[str]:
    argv = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-nostats",
            "-progress", str(progress_path)]  # fmt: skip
    if realtime:
        argv.append("-re")
    argv += ["-i", str(source_path)]
    has_audio = source.audio_codec is not None
    stream_map = []
    for i, variant in enumerate(chosen):
        argv += ["-map", "0:v:0"]
        if has_audio:
            argv += ["-map", "0:a:0"]
        if can_copy_video(variant, source):
            argv += [f"-c:v:{i}", "copy"]
        else:
            # A keyframe at every segment boundary: segments of equal length.
            keyframes = f"expr:gte(t,n_forced*{segment_seconds:g})"
            argv += [f"-c:v:{i}", "libx264", f"-preset:v:{i}", "veryfast"]
            argv += [f"-pix_fmt:v:{i}", "yuv420p", f"-force_key_frames:v:{i}", keyframes]
            if variant.height:
                argv += [f"-filter:v:{i}", f"scale=-2:{variant.height}"]
            if variant.video_bitrate:
                argv += [f"-b:v:{i}", str(variant.video_bitrate)]
        if has_audio:
            if source.audio_codec in _COPYABLE_AUDIO and not variant.audio_bitrate:
                argv += [f"-c:a:{i}", "copy"]
            else:
                argv += [f"-c:a:{i}", "aac", f"-b:a:{i}", str(variant.audio_bitrate or 128_000)]
        stream_map.append(f"v:{i},a:{i},name:{variant.name}" if has_audio else
                          f"v:{i},name:{variant.name}")  # fmt: skip
    argv += [
        "-f", "hls",
        "-hls_time", f"{segment_seconds:g}",
        "-hls_playlist_type", "event",
        # Segments and playlists appear complete under their final names.
        "-hls_flags", "temp_file+independent_segments",
        "-hls_segment_filename", str(out_dir / "%v" / "seg_%05d.ts"),
        "-master_pl_name", MASTER,
        "-var_stream_map", " ".join(stream_map),
        str(out_dir / "%v" / PLAYLIST),
    ]  # fmt: skip
    return argv
